#!/usr/bin/env bash
# Endpoints as people type them: every option of kith that takes one
# (node --listen/--advertise/--peer, kith relay --data-listen/--data-advertise
# and kith node's --relay-listen/--relay-advertise, grant create --advertise,
# the client commands' --peer) takes HOST:PORT as tcp://HOST:PORT, and
# anything else is refused before a socket is opened: exit 2, one line
# naming the option and the text, what is wrong and an example.
set -uo pipefail
KITH=$1
. "$(dirname "$0")/lib.sh"
scratch  # $T, $BP, $NET, pids=() (lib.sh)
head -c 24 /dev/urandom | base64 > "$T/cookie"; chmod 600 "$T/cookie"
stop() { # pid out: SIGTERM, a clean exit
  kill -TERM "$1"; local rc=0; wait "$1" || rc=$?
  [ "$rc" -eq 0 ] || fail "stopping $2: exit $rc: $(cat "$2")"
}

# 1. HOST:PORT is tcp://HOST:PORT: --listen, --advertise, and the member port
# on the --listen address.
touch "$T/a.out" "$T/a2.out" "$T/r.out"  # before the nodes write them: wait_for reads them at once
KITH_HOME=$T/a "$KITH" node --name a --listen 127.0.0.1:0 --cookie-file "$T/cookie" "${NET[@]}" > "$T/a.out" 2>&1 &
apid=$!; pids+=($apid)
wait_for '^ready' "$T/a.out" 30 || exit 1
grep -Eq '^endpoint tcp://127\.0\.0\.1:[0-9]+$' "$T/a.out" || fail "--listen 127.0.0.1:0: $(cat "$T/a.out")"
grep -Eq '^member endpoint tcp://127\.0\.0\.1:[0-9]+ ' "$T/a.out" || fail "member port on 127.0.0.1: $(cat "$T/a.out")"
# grant create --advertise HOST:PORT: the grant file lists that endpoint, the
# node running (on loopback: it would list that) or not.
run_as a "grant create --advertise, node running" 0 grant create bob --services kvs --out "$T/bob.grant" \
  --advertise 192.0.2.7:4370 --cookie-file "$T/cookie"
grep -qx 'endpoint: tcp://192.0.2.7:4370' "$T/bob.grant" || fail "grant create --advertise: $(grep endpoint "$T/bob.grant")"
# An endpoint that parses but cannot be listened on: exit 1, saying why and what to do.
ep=$(sed -n 's/^endpoint tcp:\/\///p' "$T/a.out")
run_as x "--listen a taken port" 1 node --name x --listen "$ep" --no-discovery &&
  expect_err "--listen a taken port" "node: --listen $ep: the port is taken (another node or program?); choose another, or port 0 for any free one"
stop "$apid" "$T/a.out"
run_as x "--listen not this machine's" 1 node --name x --listen 192.0.2.7:4370 --no-discovery &&
  expect_err "--listen not this machine's" "node: --listen 192.0.2.7:4370: 192.0.2.7 is not an address of this machine; give one of its own (ip -4 addr shows them)"
run_as x "--listen a host name" 1 node --name x --listen localhost:0 --no-discovery &&
  expect_err "--listen a host name" "node: --listen localhost:0: 'localhost' is neither an IPv4 address nor a network interface of this machine (a host name is not looked up to listen); give an address"
KITH_HOME=$T/a "$KITH" node --name a --listen 127.0.0.1:0 --advertise 192.0.2.7:4370 --member-port off \
  --cookie-file "$T/cookie" --no-discovery > "$T/a2.out" 2>&1 &
apid=$!; pids+=($apid)
wait_for '^ready' "$T/a2.out" 30 || exit 1
grep -q '^endpoint tcp://192\.0\.2\.7:4370$' "$T/a2.out" || fail "--advertise 192.0.2.7:4370: $(cat "$T/a2.out")"
stop "$apid" "$T/a2.out"

# 2. What is not an endpoint: exit 2, one line, the option, the text, why, an example.
bad() { # what want-in-stderr kith-args...
  local what=$1 want=$2; shift 2
  run_as x "$what" 2 "$@" || return
  expect_err "$what" "$want"
  expect_err "$what" "e\.g\. "
}
bad "--listen no port" "node: --listen '127.0.0.1' has no port" node --listen 127.0.0.1 --no-discovery
bad "--listen a word" "node: --listen 'foo' has no port" node --listen foo --no-discovery
bad "--listen port too big" "'127.0.0.1:99999' has no valid port: the port is a number from 0 (any free port) to 65535" \
  node --listen 127.0.0.1:99999 --no-discovery
bad "--listen udp" "'udp://127.0.0.1:5' is not a TCP endpoint" node --listen udp://127.0.0.1:5 --no-discovery
bad "--listen IPv6" "'\[::1\]:0' is an IPv6 address: kith listens and dials over IPv4 only" node --listen '[::1]:0' --no-discovery
bad "--listen no host" "':4370' has no host" node --listen :4370 --no-discovery
bad "--listen a space" "does not start with a host name or IPv4 address" node --listen 'a b:1' --no-discovery
bad "--listen empty" "node: --listen '' is empty" node --listen '' --no-discovery
bad "--advertise port 0" "node: --advertise '127.0.0.1:0' has no valid port: the port is a number from 1 to 65535" \
  node --listen 127.0.0.1:0 --advertise 127.0.0.1:0 --no-discovery
bad "node --peer" "node: --peer 'a/b:1' does not start" node --listen 127.0.0.1:0 --peer a/b:1 --no-discovery
bad "nodes --peer" "kith: --peer '\[fe80::1\]:4370' is an IPv6 address" nodes --peer '[fe80::1]:4370' --timeout 0.2
bad "grant create --advertise" "grant create: --advertise 'vps' has no port" \
  grant create bob --services kvs --out "$T/bob2.grant" --name a --advertise vps
bad "relay --data-listen" "relay: --data-listen (kith node --relay-listen) 'nowhere' has no port" \
  relay --listen 127.0.0.1:0 --data-listen nowhere --no-discovery
bad "node --relay-listen" "(kith node --relay-listen) 'x:70000' has no valid port" \
  node --serve-relay --listen 127.0.0.1:0 --relay-listen x:70000 --no-discovery
bad "relay --data-advertise" "relay: --data-advertise (kith node --relay-advertise) '1.2.3.4:0' has no valid port" \
  relay --listen 127.0.0.1:0 --data-listen 127.0.0.1:0 --data-advertise 1.2.3.4:0 --no-discovery
[ -e "$T/bob2.grant" ] && fail "grant create --advertise vps wrote $T/bob2.grant"
# With no node running, the stored table's grant lists it too.
run_as a "grant create --advertise, no node" 0 grant create carol --services kvs --out "$T/carol.grant" --name a \
  --advertise tcp://192.0.2.8:4370
grep -qx 'endpoint: tcp://192.0.2.8:4370' "$T/carol.grant" || fail "grant create --advertise, no node: $(grep endpoint "$T/carol.grant")"

# 3. The client's --peer: HOST, HOST:PORT and tcp://HOST:PORT are all a peer.
for p in 127.0.0.1 127.0.0.1:4370 tcp://127.0.0.1:4370; do
  run "nodes --peer $p" 0 nodes --peer "$p" --timeout 0.2
done

# A client's --peer whose name does not resolve would be asked nothing: exit 2,
# saying so (".invalid" never resolves, RFC 6761).
run "nodes --peer unresolvable" 2 nodes --peer nosuch.invalid:4370 --timeout 0.2 &&
  expect_err "nodes --peer unresolvable" "kith: --peer 'nosuch.invalid:4370': 'nosuch.invalid' does not resolve to an IPv4 address"

# 4. The relay's data plane at tcp://HOST:PORT, advertised at an address without a port.
KITH_HOME=$T/r "$KITH" relay --listen 127.0.0.1:0 --data-listen tcp://127.0.0.1:0 --data-advertise 127.0.0.1 \
  --cookie-file "$T/cookie" --no-discovery > "$T/r.out" 2>&1 &
rpid=$!; pids+=($rpid)
wait_for '^ready' "$T/r.out" 30 || exit 1
grep -Eq '^relay data plane 127\.0\.0\.1:[0-9]+ \(listening on 127\.0\.0\.1:0\)' "$T/r.out" ||
  fail "relay --data-listen tcp://127.0.0.1:0: $(cat "$T/r.out")"
stop "$rpid" "$T/r.out"

[ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "endpoints ok"
