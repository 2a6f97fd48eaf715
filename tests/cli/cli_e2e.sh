#!/usr/bin/env bash
# The `kith` command end to end on one machine, typed as a user would type it:
# the seeds' walkthroughs (kvs over rpc, echo, dist_demo), node names in full
# and short, nodes/ping/watch, grants for a friend, and every error path's
# exit code and message. Beacons stay on loopback (127.255.255.255, a port of
# this run's own); every node has its own key directory.
set -uo pipefail
KITH=$1
. "$(dirname "$0")/lib.sh"
scratch  # $T, $BP, $NET, pids=() (lib.sh)
start_node() { # name home cookie [options...]
  local name=$1 home=$2 cookie=$3; shift 3
  KITH_HOME=$T/$home "$KITH" node --name "$name" --listen tcp://127.0.0.1:0 --cookie "$cookie" "${NET[@]}" "$@" \
    > "$T/$home.out" 2>&1 &
  pids+=($!)
  disown $!  # cleanup kills it; no job-control chatter
  wait_for '^ready' "$T/$home.out" 30 || exit 1
}
port_of() { sed -n 's/^endpoint tcp:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/$1.out"; }

# run NAME EXPECTED_RC [env...] -- kith args: runs kith as user "cli"
# (cookie c1, its own key dir), keeps stdout in $out and stderr in $err.
run() {
  local what=$1 want=$2; shift 2
  out=$(KITH_HOME=$T/cli "$KITH" "$@" 2> "$T/err") ; rc=$?
  err=$(cat "$T/err")
  if [ "$rc" -ne "$want" ]; then fail "$what: exit $rc, wanted $want; out=$out err=$err"; return 1; fi
  if [ "$want" -ne 0 ] && [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ]; then fail "$what: stderr is not one line: $err"; fi
  return 0
}
expect_out() { [ "$out" = "$2" ] || fail "$1: printed '$out', wanted '$2'"; }
expect_err() { printf '%s' "$err" | grep -q -- "$2" || fail "$1: stderr '$err' lacks '$2'"; }

C=(--cookie c1 "${NET[@]}")
start_node gandalf gandalf c1
start_node bilbo bilbo c1
wait_for '^nodeup bilbo@' "$T/gandalf.out" 10 || fail "gandalf never saw bilbo"
wait_for '^nodeup gandalf@' "$T/bilbo.out" 10 || fail "bilbo never saw gandalf"
HOST=$(sed -n 's/^node gandalf@//p' "$T/gandalf.out")

# --- the seeds' kvs walkthrough -------------------------------------------
run "store" 0 call gandalf kvs store '"weather"' '"fine"' "${C[@]}" && expect_out store true
run "lookup" 0 call gandalf kvs lookup '"weather"' "${C[@]}" && expect_out lookup '["ok","fine"]'
run "lookup by full name" 0 call "gandalf@$HOST" kvs lookup '"weather"' "${C[@]}" && expect_out full '["ok","fine"]'
run "lookup missing" 0 call gandalf kvs lookup '"jim"' "${C[@]}" && expect_out missing '"undefined"'
run "keys" 0 call gandalf kvs keys "${C[@]}" && expect_out keys '["weather"]'
# cast: no answer; the value shows up.
run "cast" 0 cast bilbo kvs store '"k"' '{"n":[1,2.5,null]}' "${C[@]}" && expect_out cast ""
deadline=$((SECONDS + 10)); got=
while [ $SECONDS -lt $deadline ]; do
  got=$(KITH_HOME=$T/cli "$KITH" call bilbo kvs lookup '"k"' "${C[@]}" 2>/dev/null)
  [ "$got" = '["ok",{"n":[1,2.5,null]}]' ] && break; sleep 0.1
done
[ "$got" = '["ok",{"n":[1,2.5,null]}]' ] || fail "cast never stored: $got"

# --- dist_demo and echo ----------------------------------------------------
run "dist_demo node()" 0 call gandalf demo node "${C[@]}" && expect_out demo "\"gandalf@$HOST\""
run "spawn echo server" 0 spawn gandalf echo server "${C[@]}"
printf '%s' "$out" | grep -Eq '^\{"\$pid":"<gandalf@[^>]+\.[0-9]+>"\}$' || fail "spawn printed '$out'"
pid=$(printf '%s' "$out" | sed 's/.*"\(<[^"]*>\)".*/\1/')
run "send to pid" 0 send "$pid" 17 "${C[@]}"
run "send to registered echo" 0 send "echo@gandalf" '"abc"' "${C[@]}"
run "send to a name nobody registered" 1 send "nobody@gandalf" '"abc"' "${C[@]}" &&
  expect_err "send to nobody" 'no_proc: nothing is registered as "nobody" on gandalf@'
wait_for 'echo got "abc"' "$T/gandalf.out" 10 || fail "echo server never got abc"

# --- what is there ----------------------------------------------------------
run "ping" 0 ping bilbo "${C[@]}" && expect_out ping pong
run "nodes" 0 nodes --json "${C[@]}"
for n in gandalf bilbo; do printf '%s' "$out" | grep -q "\"name\":\"$n@$HOST\"" || fail "nodes lacks $n: $out"; done
printf '%s' "$out" | grep -q '"trust":"cluster"' || fail "nodes: no cluster trust: $out"
printf '%s' "$out" | grep -q 'kith-cli' && fail "nodes lists a hidden CLI node: $out"
run "nodes table" 0 nodes "${C[@]}"
printf '%s' "$out" | grep -q "^gandalf@$HOST  *cluster" || fail "nodes table: $out"

# watch: sees a node come and go, with the reason.
KITH_HOME=$T/cli "$KITH" watch --json "${C[@]}" > "$T/watch.out" 2>&1 &
wpid=$!; pids+=($wpid)
wait_for '"node":"gandalf@' "$T/watch.out" 10 || fail "watch never saw gandalf"
start_node frodo frodo c1
frodo_pid=${pids[-1]}
wait_for '"event":"nodeup","node":"frodo@' "$T/watch.out" 10 || fail "watch never saw frodo up"
kill -TERM "$frodo_pid"
wait_for '"detail":"shutdown","event":"nodedown","node":"frodo@' "$T/watch.out" 10 || fail "watch: no nodedown shutdown"
# a stranger (another cookie) is listed as such, never as a member
start_node saruman saruman c2
wait_for '"event":"stranger","node":"saruman@' "$T/watch.out" 10 || fail "watch: saruman not listed as stranger"
kill -INT $wpid; wait $wpid; rc=$?
[ $rc -eq 0 ] || fail "watch exit $rc after Ctrl-C"
run "nodes shows stranger" 0 nodes --json "${C[@]}"
printf '%s' "$out" | grep -q "\"name\":\"saruman@$HOST\",[^}]*\"trust\":\"stranger\"" ||
  printf '%s' "$out" | grep -q "\"trust\":\"stranger\"" || fail "nodes: saruman not a stranger: $out"
run "stranger refuses us" 1 call saruman kvs keys "${C[@]}"

# --- error paths --------------------------------------------------------------
run "unknown node" 1 call nobody kvs keys "${C[@]}" && expect_err "unknown node" "nobody"
expect_err "unknown node lists what it sees" "gandalf@$HOST"
start_node gandalf@elsewhere gandalf2 c1
wait_for '^nodeup gandalf@elsewhere' "$T/gandalf.out" 10 || fail "no second gandalf"
run "ambiguous name" 1 call gandalf kvs keys "${C[@]}" && expect_err ambiguous "gandalf@elsewhere"
run "full name disambiguates" 0 call gandalf@elsewhere kvs keys "${C[@]}" && expect_out keys2 '[]'
run "unknown service" 1 call bilbo nope f "${C[@]}" && expect_err "unknown service" "no_such_service"
run "unknown function" 1 call bilbo kvs nope "${C[@]}" && expect_err "unknown function" "no_such_function"
run "wrong arguments" 1 call bilbo kvs store '"only-one"' "${C[@]}" && expect_err "bad args" "bad_args"
run "bad JSON" 2 call bilbo kvs store weather fine "${C[@]}" && expect_err "bad json" "bad JSON"
run "bad pid" 2 send '{"$pid":"nope"}' 1 "${C[@]}"
run "missing arguments" 2 call bilbo kvs "${C[@]}"
run "unknown option" 2 call bilbo kvs keys --bogus "${C[@]}"
run "unknown command" 2 frobnicate
run "help" 0 call --help
printf '%s' "$out" | grep -q "usage: kith call" || fail "call --help: $out"

# --- grants: Alice (gandalf) lets Bob use kvs, nothing else -------------------
GP=$(port_of gandalf)
A=(--key-dir "$T/gandalf" --port "$GP" --cookie c1)
run "grant create" 0 grant create bob --services kvs --rate 50/s --expires 1h --out "$T/bob.grant" "${A[@]}"
[ "$(stat -c %a "$T/bob.grant")" = 600 ] || fail "grant file mode $(stat -c %a "$T/bob.grant")"
B=(--grant "$T/bob.grant" --cookie bobs-own "${NET[@]}")
run "bob stores" 0 call gandalf kvs store '"bob"' '"hello"' "${B[@]}" && expect_out bob-store true
run "bob looks up" 0 call gandalf kvs lookup '"bob"' "${B[@]}" && expect_out bob-lookup '["ok","hello"]'
run "bob's echo unauthorized" 1 call gandalf echo echo '"hi"' "${B[@]}" && expect_err unauthorized unauthorized
run "bob's grant is not for bilbo" 1 call bilbo kvs keys "${B[@]}"
run "grant list" 0 grant list --json "${A[@]}"
printf '%s' "$out" | grep -q '"label":"bob"' || fail "grant list lacks bob: $out"
run "grant revoke" 0 grant revoke bob "${A[@]}"
run "bob revoked" 1 call gandalf kvs lookup '"bob"' "${B[@]}" && expect_err revoked "revoked"
run "revoke unknown" 1 grant revoke nobody "${A[@]}"
run "grant create rate-limited" 0 grant create carol --services kvs:lookup --rate 1/s,burst=1 --out "$T/carol.grant" "${A[@]}"
CA=(--grant "$T/carol.grant" --cookie carols-own "${NET[@]}")
run "carol first" 0 call gandalf kvs lookup '"bob"' "${CA[@]}"
run "carol too fast" 1 call gandalf kvs lookup '"bob"' "${CA[@]}" && expect_err "rate" "rate_limited"
run "carol's store not granted" 1 call gandalf kvs store '"x"' 1 "${CA[@]}"
run "missing grant file" 1 call gandalf kvs keys --grant "$T/none.grant"
printf 'kith-grant 1\ngarbage\n' > "$T/bad.grant"; chmod 600 "$T/bad.grant"
run "malformed grant file" 1 call gandalf kvs keys --grant "$T/bad.grant" && expect_err malformed "bad.grant"
run "grant bad rate" 2 grant create dave --services kvs --rate fast --out "$T/d.grant" "${A[@]}"
run "grant without services" 2 grant create dave --out "$T/d.grant" "${A[@]}"
run "grants service can't be granted" 1 grant create eve --services grants --out "$T/e.grant" "${A[@]}"

# With gandalf stopped, grant commands act on its stored table.
kill -TERM "${pids[0]}"
wait_for '^stopped$' "$T/gandalf.out" 10 || fail "gandalf did not stop"
deadline=$((SECONDS + 10)); while kill -0 "${pids[0]}" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
run "grant list stopped" 0 grant list --json "${A[@]}"
printf '%s' "$out" | grep -q '"label":"carol"' || fail "stored table lacks carol: $out"
run "ping stopped node" 1 ping "gandalf@$HOST" --timeout 2 "${C[@]}" && expect_out pang pang

if [ $fails -ne 0 ]; then
  echo "$fails failure(s)"; for f in "$T"/*.out; do echo "== $f"; tail -20 "$f"; done
  exit 1
fi
echo "cli e2e ok"
