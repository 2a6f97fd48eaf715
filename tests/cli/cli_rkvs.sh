#!/usr/bin/env bash
# The replicated kvs from the command line (issue 17), typed as a user would:
# three nodes on loopback with `kith node --rkvs a,b,c`; store through one,
# lookup through another; kill -9 of the node the write went through (the
# acknowledged value still answers; writes still acknowledged by the two
# left); a second kill leaves one replica: lookups answer, writes are refused
# (nodedown); a restarted replica gets the data back; usage errors.
set -uo pipefail
KITH=$1
. "$(dirname "$0")/lib.sh"
scratch  # $T, $BP, $NET, pids=() (lib.sh)
NODE_OPTS=(--rkvs a,b,c)  # start_node, run, expect_err: lib.sh
expect_out() { [ "$out" = "$2" ] || fail "$1: printed '$out', wanted '$2'"; }
head -c 24 /dev/urandom | base64 > "$T/cookie"; chmod 600 "$T/cookie"

start_node a
start_node b
start_node c
HOST=$(sed -n 's/^node a@//p' "$T/a.out")
grep -q '^services .* rkvs$' "$T/a.out" || fail "banner lacks rkvs: $(grep '^services' "$T/a.out")"
grep -q "^rkvs on a@$HOST b@$HOST c@$HOST$" "$T/a.out" || fail "banner lacks the replicas: $(cat "$T/a.out")"
for n in a b c; do for m in a b c; do
  [ $n = $m ] || wait_for "^nodeup $m@$HOST " "$T/$n.out" 20 || fail "$n never saw $m"
done; done

# --- store through a, lookup through c and b --------------------------------------
run "store via a" 0 call a rkvs store '"weather"' '"sunny"' && expect_out "store via a" true
run "lookup via c" 0 call c rkvs lookup '"weather"' && expect_out "lookup via c" '["ok","sunny"]'
run "lookup via b" 0 call b rkvs lookup '"weather"' && expect_out "lookup via b" '["ok","sunny"]'
run "lookup missing" 0 call b rkvs lookup '"nothing"' && expect_out "lookup missing" '"undefined"'
run "store via c" 0 call c rkvs store '"n"' '[1,2.5,null]' && expect_out "store via c" true
run "lookup n via a" 0 call a rkvs lookup '"n"' && expect_out "lookup n via a" '["ok",[1,2.5,null]]'

# --- kill -9 the node the write went through: the value still answers ---------------
kill -9 "${nodepid[a]}"
run "lookup via b, a dead" 0 call b rkvs lookup '"weather"' && expect_out "lookup via b, a dead" '["ok","sunny"]'
run "lookup via c, a dead" 0 call c rkvs lookup '"weather"' && expect_out "lookup via c, a dead" '["ok","sunny"]'
run "store via b, a dead" 0 call b rkvs store '"weather"' '"rain"' && expect_out "store via b, a dead" true
run "lookup via c after" 0 call c rkvs lookup '"weather"' && expect_out "lookup via c after" '["ok","rain"]'
run "delete via c" 0 call c rkvs delete '"n"' && expect_out "delete via c" true
run "keys via b" 0 call b rkvs keys && expect_out "keys via b" '["weather"]'

# --- one replica left: lookups answer, writes refused --------------------------------
kill -9 "${nodepid[b]}"
wait_for "^nodedown b@$HOST" "$T/c.out" 20 || fail "c never saw b go"
run "lookup via c alone" 0 call c rkvs lookup '"weather"' && expect_out "lookup via c alone" '["ok","rain"]'
run "store via c alone" 1 call c rkvs store '"weather"' '"snow"' && expect_err "store via c alone" 'nodedown'
run "lookup via c still" 0 call c rkvs lookup '"weather"' && expect_out "lookup via c still" '["ok","rain"]'

# --- a comes back empty: the data is back by anti-entropy ----------------------------
start_node a
wait_for "^nodeup c@$HOST " "$T/a.out" 20 || fail "a never saw c again"
deadline=$((SECONDS + 15))
until out=$(KITH_HOME=$T/cli "$KITH" call a rkvs keys --cookie-file "$T/cookie" "${NET[@]}" 2>/dev/null); [ "$out" = '["weather"]' ]; do
  [ $SECONDS -lt $deadline ] || { fail "restarted a never got the keys back: $out"; break; }
  sleep 0.1
done
run "store via a back" 0 call a rkvs store '"weather"' '"fog"' && expect_out "store via a back" true
run "lookup via c back" 0 call c rkvs lookup '"weather"' && expect_out "lookup via c back" '["ok","fog"]'

# --- usage errors of kith node --rkvs ------------------------------------------------
KITH_HOME=$T/x "$KITH" node --name x --listen tcp://127.0.0.1:0 --cookie-file "$T/cookie" --no-discovery \
  --rkvs p,q > "$T/x.out" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "rkvs p,q: replicated kvs: the replica list must include this node (x@$HOST).*list this node" "$T/x.out" ||
  fail "--rkvs without this node: rc $rc: $(cat "$T/x.out")"
KITH_HOME=$T/x "$KITH" node --name x --listen tcp://127.0.0.1:0 --cookie-file "$T/cookie" --no-discovery \
  --rkvs x,y,x > "$T/x.out" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q 'names a node twice' "$T/x.out" || fail "--rkvs x,y,x: rc $rc: $(cat "$T/x.out")"
KITH_HOME=$T/x "$KITH" node --name x --listen tcp://127.0.0.1:0 --cookie-file "$T/cookie" --no-discovery \
  --rkvs , > "$T/x.out" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q 'rkvs wants the replica list' "$T/x.out" || fail "--rkvs ,: rc $rc: $(cat "$T/x.out")"

[ "$fails" -eq 0 ] && echo "cli rkvs: all passed"
exit $((fails > 0))
