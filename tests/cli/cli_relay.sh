#!/usr/bin/env bash
# The relay from the command line (issue 16), typed as a user would, with
# real processes on loopback: kith relay (its owner gives Alice a relay
# grant), Alice's kith node --relay, a grant for Bob made with --via, Bob's
# kith call through the relay when Alice's direct endpoint does not answer,
# and directly when it does; kith nodes --relay; a name registered by
# another key refused; the relay down reported, and Alice registered again
# when it comes back. Each node has its own key directory and cookie (three
# people, three clusters).
set -uo pipefail
KITH=$1
. "$(dirname "$0")/lib.sh"
scratch  # $T, $BP, $NET, pids=() (lib.sh)
for who in r a b e m d; do head -c 24 /dev/urandom | base64 > "$T/$who.cookie"; chmod 600 "$T/$who.cookie"; done
# Below the ephemeral range (32768-60999): the relay and Alice are restarted
# on these ports, and an ephemeral one can be taken meanwhile as a local port.
RPORT=$((10000 + RANDOM % 20000)); DPORT=$((RPORT + 1))
k() { # who kith-args...: as that person (key dir $T/who, cookie $T/who.cookie); only in & or $(...)
  local who=$1; shift
  KITH_HOME=$T/$who exec "$KITH" "$@" --cookie-file "$T/$who.cookie"
}
run() { # what expected_rc who kith-args...: stdout in $out, stderr in $err
  local what=$1 want=$2; shift 2
  out=$(k "$@" 2> "$T/err"); rc=$?
  err=$(cat "$T/err")
  if [ "$rc" -ne "$want" ]; then fail "$what: exit $rc, wanted $want; out=$out err=$err"; return 1; fi
  if [ "$want" -ne 0 ] && [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ]; then fail "$what: stderr is not one line: $err"; fi
  return 0
}
expect_err() { printf '%s' "$err" | grep -q -- "$2" || fail "$1: stderr '$err' lacks '$2'"; }
expect_out() { printf '%s' "$out" | grep -q -- "$2" || fail "$1: stdout '$out' lacks '$2'"; }
start_relay() {
  k r relay --name relay --listen "tcp://127.0.0.1:$RPORT" --data-listen "127.0.0.1:$DPORT" --open --no-discovery \
    --session-port-idle 30 --pair-timeout 5 --handshake-timeout 3 --max-connections 1024 --max-dialler-sessions 8 \
    --max-tokens 64 --token-lifetime 3600 --name-lifetime 7776000 --dead-peer-timeout 10 > "$T/relay.out" 2>&1 &
  relay_pid=$!; pids+=($!); disown $!
  wait_for '^ready' "$T/relay.out" 30 || exit 1
}

# 1. The relay on "the VPS"; its owner gives Alice (and Eve) a relay grant.
start_relay
grep -q "relay data plane 127.0.0.1:$DPORT" "$T/relay.out" || fail "relay: no data plane line: $(cat "$T/relay.out")"
grep -q "^relay session ports any free port$" "$T/relay.out" || fail "relay: no session ports line: $(cat "$T/relay.out")"
# Bad session port ranges and name caps: exit 2, saying what is wanted.
run "relay --session-ports 5-2" 2 r relay --session-ports 5-2 --no-discovery
expect_err "relay --session-ports 5-2" "wants MIN-MAX (1..65535, MIN <= MAX"
run "relay --session-ports x" 2 r relay --session-ports x --no-discovery
expect_err "relay --session-ports x" "or off (got 'x')"
run "relay --max-names 0" 2 r relay --max-names 0 --no-discovery
expect_err "relay --max-names 0" "wants a positive whole number (got '0')"
# The deadlines and counts: a value out of bounds says which and what it must be.
run "relay --session-port-idle 0.5" 2 r relay --session-port-idle 0.5 --no-discovery
expect_err "relay --session-port-idle 0.5" "session_port_idle (kith relay --session-port-idle SECONDS, Python session_port_idle=) is 500 ms: it must be from 1 s to 24 h"
run "relay --dead-peer-timeout 0.2" 2 r relay --dead-peer-timeout 0.2 --no-discovery
expect_err "relay --dead-peer-timeout 0.2" "dead_peer_timeout (kith relay --dead-peer-timeout SECONDS, Python dead_peer_timeout=) is 200 ms: it must be from 1 s to 900 s"
run "relay --pair-timeout x" 2 r relay --pair-timeout x --no-discovery
expect_err "relay --pair-timeout x" "relay: --pair-timeout (kith node --relay-pair-timeout) wants seconds, e.g. 30 or 0.5 (got 'x')"
run "relay --token-lifetime 5" 2 r relay --token-lifetime 5 --no-discovery
expect_err "relay --token-lifetime 5" "token_lifetime .* is 5 s: it must be from 60 s to 720 h"
run "relay --max-tokens 0" 2 r relay --max-tokens 0 --no-discovery
expect_err "relay --max-tokens 0" "wants a positive whole number (got '0')"
run "node --relay-pair-timeout without --serve-relay" 2 r node --relay-pair-timeout 5 --no-discovery
expect_err "node --relay-pair-timeout without --serve-relay" "configures the relay this node serves: add --serve-relay"
run "grant create alice --services relay" 0 r grant create alice --services relay --out "$T/alice-relay.grant" || exit 1
run "grant create eve --services relay" 0 r grant create eve --services relay --out "$T/eve-relay.grant"
# A relay grant that may register only one name, one session at a time.
run "grant create mallory --relay-names" 0 r grant create mallory --services relay --relay-names 'mallory@*' \
  --relay-sessions 1 --out "$T/mallory-relay.grant"
expect_out "grant create --relay-names" "at this relay: may register mallory@\*; 1 relayed sessions at once; the relay's bytes/s"
# A relay grant with its own bandwidth (kept in the relay's relay-grants file).
run "grant create --relay-rate" 0 r grant create slow --services relay --relay-rate 65536 --out "$T/slow-relay.grant"
expect_out "grant create --relay-rate" "any free name; the relay's relayed sessions at once; at most 65536 bytes/s each way"
grep -q '^grant slow names=\* sessions=0 bytes_per_s=65536$' "$T/r/relay-grants" || fail "relay-grants: $(cat "$T/r/relay-grants")"
# Changed after it was made (kith grant limits, as kith grant rate): replaced whole.
run "grant limits --relay-sessions" 0 r grant limits slow --relay-sessions 3 --relay-names 'slow@*'
expect_out "grant limits --relay-*" "at this relay, 'slow' may now register slow@\*; 3 relayed sessions at once; the relay's bytes/s"
grep -q '^grant slow names=slow@\* sessions=3$' "$T/r/relay-grants" || fail "relay-grants after limits: $(cat "$T/r/relay-grants")"
run "grant limits --relay-rate too low" 2 r grant limits slow --relay-rate 100
expect_err "grant limits --relay-rate too low" "grant limits: --relay-rate wants bytes per second"
run "grant limits --relay-rate unknown" 1 r grant limits nobody --relay-rate 8192
expect_err "grant limits --relay-rate unknown" 'no grant labelled "nobody"'
# A revoked relay grant's limits cannot change: the error says what to do instead.
run "grant create gone --services relay" 0 r grant create gone --services relay --out "$T/gone-relay.grant"
run "grant revoke gone" 0 r grant revoke gone
run "grant limits revoked" 1 r grant limits gone --relay-sessions 2
expect_err "grant limits revoked" 'the grant "gone" is revoked: it can never be used again, so its limits cannot change; issue a new grant under another label'
run "--relay-rate too low" 2 r grant create slow2 --services relay --relay-rate 100 --out "$T/slow2.grant"
expect_err "--relay-rate too low" "at least 4096 (got '100')"
run "--relay-names without relay" 2 r grant create m2 --services kvs --relay-names x@y --out "$T/m2.grant"
expect_err "--relay-names without relay" "add --services relay"

# 2. Alice at home, registered at the relay; her grant for Bob names it.
APORT=$((DPORT + 1))
k a node --name alice --listen "tcp://127.0.0.1:$APORT" --no-discovery \
  --relay "$T/alice-relay.grant" > "$T/alice.out" 2>&1 &
alice_pid=$!; pids+=($!); disown $!
wait_for '^ready' "$T/alice.out" 30 || exit 1
wait_for '^relay: registered at relay@' "$T/alice.out" 15 || fail "alice never registered at the relay"
run "grant create bob --via" 0 a grant create bob --services kvs --via "$T/alice-relay.grant" --out "$T/bob.grant"
expect_out "grant create --via" "^relay relay@"
grep -q '^kith-grant 2' "$T/bob.grant" || fail "bob.grant is not version 2: $(cat "$T/bob.grant")"
grep -q "^relay: relay@[^ ]* tcp://127.0.0.1:$RPORT " "$T/bob.grant" || fail "bob.grant has no relay route"
grep -q 'client-secret-key' "$T/alice-relay.grant" && ! grep -qF "$(grep client-secret-key "$T/alice-relay.grant" | cut -d' ' -f2)" "$T/bob.grant" ||
  fail "bob.grant carries the relay grant's secret"

# A copy of Bob's grant whose direct endpoint does not answer (as from
# outside Alice's home router): only the relay route works.
python3 - "$T/bob.grant" "tcp://127.0.0.1:9" "$T/home.grant" <<'EOF'
import hashlib, os, re, sys
text = open(sys.argv[1]).read()
text = re.sub(r'(?m)^endpoint: .*$', 'endpoint: ' + sys.argv[2], text)
body = text[:text.rindex('checksum: ')]
out = body + 'checksum: ' + hashlib.blake2b(body.encode(), digest_size=32).hexdigest()[:32] + '\n'
fd = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, out.encode())
EOF

# 3. Bob calls Alice's kvs: her endpoint does not answer, the relay does.
run "call through the relay" 0 b call --grant "$T/home.grant" --timeout 4 alice kvs store '"weather"' '"rain"'
run "lookup through the relay" 0 b call --grant "$T/home.grant" alice kvs lookup '"weather"'
[ "$out" = '["ok","rain"]' ] || fail "lookup through the relay: $out"
wait_for 'sessions [0-9]* ([1-9][0-9]* in all)' "$T/relay.out" 5 || fail "the relay never counted a session"
# Only what the grant allows, as on a direct link.
run "echo is not granted" 1 b call --grant "$T/home.grant" alice echo echo 1
expect_err "echo is not granted" "unauthorized"

# 4. The directory.
run "nodes --relay" 0 b nodes --relay "$T/bob.grant"
expect_out "nodes --relay" "^alice@"
# WTD's directory: the services she offers (never the admin ones). She
# registered with a relay grant: the relay knows only the grant's key and
# does not show it as hers (its fingerprint never appears).
afp=$(k r grant list --json | python3 -c 'import json,sys; print([g["fingerprint"] for g in json.load(sys.stdin) if g["label"] == "alice"][0])')
expect_out "nodes --relay: fingerprint and services" "^alice@[^ ]* *(relay grant \*) *demo,echo,kvs$"
expect_out "nodes --relay: what (relay grant) means" "the node's key is in the grant file its owner gives you"
printf '%s' "$out" | grep -qF -- "$afp" && fail "nodes --relay shows the relay grant's fingerprint: $out"
run "nodes --relay --json" 0 a nodes --relay "$T/alice-relay.grant" --json
expect_out "nodes --relay --json" '"alice@'

# 5. Direct first: a grant whose endpoint answers never uses the relay (the
#    relay's count of sessions stays where it was).
# Three relayed calls so far (store, lookup, echo): one session each.
wait_for '(3 in all)' "$T/relay.out" 5 || fail "the relay did not count 3 sessions"
before=$(grep -o '([0-9]* in all)' "$T/relay.out" | tail -1)
run "call direct" 0 b call --grant "$T/bob.grant" alice kvs lookup '"weather"'
[ "$out" = '["ok","rain"]' ] || fail "direct lookup: $out"
sleep 1.5  # the relay prints its counters once a second when they change
after=$(grep -o '([0-9]* in all)' "$T/relay.out" | tail -1)
[ "$before" = "$after" ] || fail "a direct endpoint that works still went through the relay ($before -> $after)"

# 6. A name registered by another key is refused, also while its node is away.
kill -TERM "$alice_pid"; wait_for '^stopped' "$T/alice.out" 10
k e node --name alice --listen tcp://127.0.0.1:0 --no-discovery --relay "$T/eve-relay.grant" > "$T/eve.out" 2>&1 &
eve_pid=$!; pids+=($!); disown $!
wait_for 'refused the registration' "$T/eve.out" 15 || fail "eve registered alice's name"
grep -q 'registered at this relay by another key; choose another node name' "$T/eve.out" ||
  fail "eve's refusal does not say why: $(grep relay: "$T/eve.out")"
kill -TERM "$eve_pid"; wait_for '^stopped' "$T/eve.out" 10

# A node registering under a name its relay grant does not allow is refused, saying why.
k m node --name mm --listen tcp://127.0.0.1:0 --no-discovery --relay "$T/mallory-relay.grant" > "$T/mm.out" 2>&1 &
mm_pid=$!; pids+=($!); disown $!
wait_for 'refused the registration' "$T/mm.out" 15 || fail "mm@ registered with a grant for mallory@*"
grep -q 'lets you register only mallory@\*, not mm@' "$T/mm.out" || fail "mm's refusal: $(grep relay: "$T/mm.out")"
kill -TERM "$mm_pid"; wait_for '^stopped' "$T/mm.out" 10

# 7. The relay down: Bob is told what happened; Alice says she lost it and
#    registers again when it comes back.
k a node --name alice --listen "tcp://127.0.0.1:$APORT" --no-discovery \
  --relay "$T/alice-relay.grant" > "$T/alice2.out" 2>&1 &
pids+=($!); disown $!
wait_for '^relay: registered at relay@' "$T/alice2.out" 15 || fail "alice did not register again"
run "store through the relay" 0 b call --grant "$T/home.grant" alice kvs store '"weather"' '"sun"'
kill -9 "$relay_pid"
run "call with the relay down" 1 b call --grant "$T/home.grant" --timeout 2 alice kvs lookup '"weather"'
expect_err "relay down" "cannot reach the relay relay@.* (is the relay running"
wait_for '^relay: lost the relay' "$T/alice2.out" 15 || fail "alice never noticed the relay went down"
start_relay
wait_for 'relay: registered 1,' "$T/relay.out" 20 || fail "alice did not register again after the relay came back"
# She says so: her second 'registered' line comes after 'lost', not before.
deadline=$((SECONDS + 15))
until [ "$(grep -c '^relay: registered at relay@' "$T/alice2.out")" -ge 2 ] || [ $SECONDS -ge $deadline ]; do sleep 0.05; done
[ "$(grep '^relay: \(registered at\|lost the relay\)' "$T/alice2.out" | cut -c1-20 | tr '\n' '|')" = \
  "relay: registered at|relay: lost the rela|relay: registered at|" ] ||
  fail "alice's registration lines after the relay came back: $(grep '^relay:' "$T/alice2.out")"
run "call after the relay came back" 0 b call --grant "$T/home.grant" alice kvs lookup '"weather"'
[ "$out" = '["ok","sun"]' ] || fail "lookup after the relay came back: $out"

# 8. Usage errors say what to do.
run "--relay with a missing file" 2 a node --relay "$T/nope.grant"
expect_err "--relay missing" "kith grant create LABEL --services relay"
run "--relay-open without --serve-relay" 2 a node --relay-open
expect_err "--relay-open alone" "add --serve-relay"

# 9. A relay behind a port forward: --advertise names another address and
#    port than it listens on. This machine's own commands still find it (the
#    registry keeps the port it listens on), grants name the advertised
#    endpoint, and its data plane is announced at the advertised host.
head -c 24 /dev/urandom | base64 > "$T/f.cookie"; chmod 600 "$T/f.cookie"
FPORT=$((APORT + 1)); FDATA=$((APORT + 2)); FWD=$((APORT + 3))
k f relay --name fwd --listen "tcp://127.0.0.1:$FPORT" --advertise "tcp://127.0.0.2:$FWD" \
  --data-listen "127.0.0.1:$FDATA" --no-discovery > "$T/fwd.out" 2>&1 &
pids+=($!); disown $!
wait_for '^ready' "$T/fwd.out" 30 || exit 1
grep -q "relay data plane 127.0.0.2:$FDATA (listening on 127.0.0.1:$FDATA)" "$T/fwd.out" ||
  fail "--advertise: the data plane is not announced at the advertised host: $(grep 'data plane' "$T/fwd.out")"
run "grant create on a relay that advertises a forwarded port" 0 f grant create carol --services relay \
  --out "$T/carol.grant"
grep -q "^endpoint: tcp://127.0.0.2:$FWD" "$T/carol.grant" || fail "carol.grant: $(grep endpoint "$T/carol.grant")"
run "--advertise with a host name" 2 f relay --name fwd2 --listen tcp://127.0.0.1:0 --advertise tcp://vps.example:4370 \
  --data-listen 127.0.0.1:0 --no-discovery
expect_err "--advertise with a host name" "give it with --data-advertise IPV4:PORT"

# 10. A damaged name-bindings file stops the relay, saying what to do (and nothing else).
mkdir -p "$T/d"; chmod 700 "$T/d"; printf 'kith-relay-names 1\nname a@b XX 1\n' > "$T/d/relay-names"; chmod 600 "$T/d/relay-names"
run "relay with a damaged relay-names" 1 d relay --name bad --listen tcp://127.0.0.1:0 --data-listen 127.0.0.1:0 --no-discovery
expect_err "damaged relay-names" "not a key .*move it aside (mv "
printf '%s' "$err" | grep -q -- "--relay-listen" && fail "damaged relay-names: a hint about the port: $err"

[ "$fails" -eq 0 ] && echo "cli relay: all passed"
exit "$fails"
