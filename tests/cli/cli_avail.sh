#!/usr/bin/env bash
# Availability from the command line (issue 17), typed as a user would: three
# nodes on loopback with a failover service and process groups; kith whereis,
# kith groups, kith call/send --global; kill -9 of the node running the
# service (the call by global name answers again from the next node) and its
# return (takeover); every error's exit code and message.
set -uo pipefail
KITH=$1
. "$(dirname "$0")/lib.sh"
scratch  # $T, $BP, $NET, pids=() (lib.sh)
NODE_OPTS=(--failover "fo=a,b,c" --failover-delay 0.3)  # start_node, run, expect_err: lib.sh
# until COMMAND's stdout matches PATTERN, within SECONDS: kith args after the pattern.
until_out() {
  local secs=$1 pat=$2; shift 2
  local deadline=$((SECONDS + secs))
  while :; do
    out=$(KITH_HOME=$T/cli "$KITH" "$@" --cookie-file "$T/cookie" "${NET[@]}" 2>/dev/null)
    printf '%s' "$out" | grep -Eq -- "$pat" && return 0
    [ $SECONDS -lt $deadline ] || { fail "kith $*: never printed /$pat/ in ${secs}s; last: $out"; return 1; }
    sleep 0.1
  done
}
head -c 24 /dev/urandom | base64 > "$T/cookie"; chmod 600 "$T/cookie"

start_node a --join class
start_node b --join class
start_node c --join class,lab
HOST=$(sed -n 's/^node a@//p' "$T/a.out")
grep -q '^failover fo on a@'"$HOST"' b@'"$HOST"' c@'"$HOST"'$' "$T/a.out" || fail "banner lacks the failover: $(cat "$T/a.out")"

# --- whereis, call/send --global ----------------------------------------------
until_out 15 "^fo <a@$HOST\.[0-9]+> on a@$HOST\$" whereis fo
run "whereis all" 0 whereis && { printf '%s' "$out" | grep -q "^fo <a@$HOST" || fail "whereis lists: $out"; }
run "whereis --json" 0 whereis fo --json
printf '%s' "$out" | grep -Eq "^\{\"name\":\"fo\",\"node\":\"a@$HOST\",\"pid\":\{\"\\\$pid\":\"<a@$HOST\.[0-9]+>\"\}\}\$" ||
  fail "whereis --json printed $out"
run "whereis --at c" 0 whereis fo --at c && { printf '%s' "$out" | grep -q "on a@$HOST" || fail "whereis --at c: $out"; }
run "call --global" 0 call --global fo '"hi"'
printf '%s' "$out" | grep -q "\"got\":\"hi\",\"node\":\"a@$HOST\"" || fail "call --global printed $out"
run "send --global" 0 send --global fo '["note",1]'
wait_for 'got \["note", *1\]' "$T/a.out" 10 || fail "the instance never got the message sent by global name"
run "whereis nobody" 1 whereis nobody && expect_err "whereis nobody" \
  'whereis nobody: noproc: no process holds global name "nobody" (asked .*); run `kith whereis` to list the global names'
run "call nobody" 1 call --global nobody '1' && expect_err "call nobody" 'call --global nobody: noproc: no process holds global name "nobody"'
run "send nobody" 1 send --global nobody '1' && expect_err "send nobody" 'noproc'
run "call --global bad json" 2 call --global fo 'hi' && expect_err "bad json" 'call: message:'
run "whereis two names" 2 whereis a b && expect_err "two names" 'wrong number of arguments'
run "whereis --at unknown" 1 whereis fo --at nosuchnode

# Another cluster's user (its own cookie) learns nothing: the names are the
# cluster's (the admin service "node" answers members only).
head -c 24 /dev/urandom | base64 > "$T/eve-cookie"; chmod 600 "$T/eve-cookie"
out=$(KITH_HOME=$T/eve "$KITH" whereis fo --at a --cookie-file "$T/eve-cookie" "${NET[@]}" 2> "$T/err"); rc=$?
[ $rc -eq 1 ] && grep -q 'unauthorized' "$T/err" && [ -z "$out" ] ||
  fail "a stranger's whereis: rc $rc, out '$out', err $(cat "$T/err")"
out=$(KITH_HOME=$T/eve "$KITH" call --global fo '"x"' --at b --cookie-file "$T/eve-cookie" "${NET[@]}" 2> "$T/err"); rc=$?
[ $rc -eq 1 ] && grep -q 'unauthorized' "$T/err" || fail "a stranger's call --global: rc $rc, err $(cat "$T/err")"

# --- groups -------------------------------------------------------------------
until_out 15 "^class( <[abc]@$HOST\.[0-9]+>){3}\$" groups
printf '%s' "$out" | grep -Eq "^lab <c@$HOST\.[0-9]+>\$" || fail "groups lacks lab: $out"
run "groups --json" 0 groups default --json
printf '%s' "$out" | grep -q '"class":\[{"\$pid"' || fail "groups --json printed $out"
run "groups of a scope not served" 1 groups elsewhere && expect_err "scope" 'runs no process-group scope "elsewhere"'

# --- unplug the node running fo (kill -9): the call answers from b ---------------
t0=$(date +%s%N)
kill -9 "${nodepid[a]}"
until_out 15 "\"node\":\"b@$HOST\"" call --global fo '"again"' --timeout 1
t1=$(date +%s%N)
echo "figure: cli_failover_after_kill9_ms $(( (t1 - t0) / 1000000 )) (kith call --global answering from b; loopback, default heartbeat, delay 0.3 s)"
until_out 15 "^class( <[bc]@$HOST\.[0-9]+>){2}\$" groups
# --- a returns: it takes the service back ---------------------------------------
start_node a --join class
until_out 20 "^fo <a@$HOST\.[0-9]+> on a@$HOST\$" whereis fo
until_out 10 "\"node\":\"a@$HOST\"" call --global fo '"back"'
until_out 15 "^class( <[abc]@$HOST\.[0-9]+>){3}\$" groups

# --- usage errors of kith node ----------------------------------------------------
KITH_HOME=$T/x "$KITH" node --name x --listen tcp://127.0.0.1:0 --cookie-file "$T/cookie" --no-discovery \
  --failover "nothing" > "$T/x.out" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q 'failover wants NAME=NODE1,NODE2' "$T/x.out" || fail "--failover nothing: rc $rc: $(cat "$T/x.out")"
KITH_HOME=$T/x "$KITH" node --name x --listen tcp://127.0.0.1:0 --cookie-file "$T/cookie" --no-discovery \
  --failover "fo=p,q" > "$T/x.out" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q 'list this node' "$T/x.out" || fail "--failover without this node: rc $rc: $(cat "$T/x.out")"

[ "$fails" -eq 0 ] && echo "cli availability: all passed"
exit $((fails > 0))
