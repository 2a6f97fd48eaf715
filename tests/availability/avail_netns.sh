#!/usr/bin/env bash
# Availability across three hosts with link cuts (issue 17): network
# namespaces a, b, c on a bridge (made and removed here, names k17b...), each
# running `kith node` with DEFAULT timings (heartbeat 0.5 s / timeout 2.5 s,
# failover delay 750 ms), a failover service "fo" over a,b,c, a member of group
# "class", and a single-node failover "solo" on a and on c (both want the
# name: one global name, two candidates). The link of host a is cut
# (`ip link set ... down`) and brought back; the kith command line on each
# host asks its own node. Checked, each with a deadline:
#   * group membership converges after the node loss and after the heal;
#   * a global name is never held by two pids in one connected component,
#     and after the heal exactly one holder survives (the other instance ends);
#   * the failover service answers again by global name from b after the cut,
#     is never running twice in the majority partition {b, c}, stops in the
#     minority {a}, and a takes it back after the heal.
# Times are printed as "figure:" lines (no timing assertions).
set -uo pipefail
KITH=$1
. "$(dirname "$0")/../cli/lib.sh"
if [ "$(id -u)" -ne 0 ] || ! ip -V >/dev/null 2>&1; then echo "needs root and iproute2: skipped"; exit 0; fi
T=$(mktemp -d)
ID=k17b$((RANDOM % 1000))
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for h in a b c; do ip netns del ${ID}$h 2>/dev/null; done
  ip netns del ${ID}br 2>/dev/null; rm -rf "$T"
}
trap cleanup EXIT
set -e
ip netns add ${ID}br
ip -n ${ID}br link add k17bbr type bridge; ip -n ${ID}br link set k17bbr up
i=0
for h in a b c; do
  i=$((i + 1))
  ip netns add ${ID}$h
  ip -n ${ID}br link add k17bv$h type veth peer name eth0 netns ${ID}$h
  ip -n ${ID}br link set k17bv$h master k17bbr; ip -n ${ID}br link set k17bv$h up
  ip -n ${ID}$h addr add 10.117.0.$i/24 brd + dev eth0
  ip -n ${ID}$h link set eth0 up; ip -n ${ID}$h link set lo up
done
set +e
head -c 24 /dev/urandom | base64 > "$T/cookie"; chmod 600 "$T/cookie"
H=$(hostname | sed 's/[^A-Za-z0-9_.-]/-/g')
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
node() { # host [options...]
  local h=$1; shift
  KITH_HOME=$T/$h ip netns exec ${ID}$h "$KITH" node --name "$h" --cookie-file "$T/cookie" \
    --failover "fo=a,b,c" --join class "$@" > "$T/$h.out" 2>&1 &
  pids+=($!); disown $!
  wait_for '^ready' "$T/$h.out" 30 || exit 1
}
# k HOST kith-args...: the kith command line on HOST as its node's owner (the
# same key dir: found through the local registry, also while the link is cut).
k() { local h=$1; shift; KITH_HOME=$T/$h ip netns exec ${ID}$h "$KITH" "$@" --cookie-file "$T/cookie" --timeout 1.5; }
# until_k SECONDS PATTERN HOST kith-args...: until the output matches.
until_k() {
  local secs=$1 pat=$2; shift 2
  local deadline=$((SECONDS + secs))
  while :; do
    out=$(k "$@" 2>/dev/null)
    printf '%s' "$out" | grep -Eq -- "$pat" && return 0
    [ $SECONDS -lt $deadline ] || { fail "kith $* on host $1: never printed /$pat/ in ${secs}s; last: $out"; return 1; }
    sleep 0.1
  done
}
# Where fo runs, as each node says (node:failovers): "a b c" flags 1/0.
running() { # host...: how many of them say fo runs there
  local n=0 h
  for h in "$@"; do
    k "$h" call "$h" node failovers 2>/dev/null | grep -q '"name":"fo","nodes":\[[^]]*\],"running_here":true' && n=$((n + 1))
  done
  echo $n
}
# fo_answers_from SECONDS FROM ASK WATCHED...: until `kith call --global fo` on
# host ASK is answered by node FROM; sets $answered (ms, empty if never) and
# $twice=1 if meanwhile fo ran on more than one of the WATCHED hosts.
fo_answers_from() {
  local secs=$1 from=$2 ask=$3; shift 3
  local deadline=$((SECONDS + secs))
  twice=0; answered=
  while [ $SECONDS -lt $deadline ]; do
    [ "$(running "$@")" -le 1 ] || twice=1
    out=$(k "$ask" call --global fo '"where"' --at "$ask" 2>/dev/null)
    if printf '%s' "$out" | grep -q "\"node\":\"$from@$H\""; then answered=$(now_ms); return; fi
    sleep 0.05
  done
}
solo_pid() { k "$1" whereis solo --at "$2" 2>/dev/null | sed -n 's/^solo \(<[^>]*>\) on .*/\1/p'; }

node a --failover "solo=a"
node b
until_k 20 "^solo <a@$H" a whereis solo --at a
node c --failover "solo=c"
for h in a b c; do
  until_k 20 "^fo <a@$H\.[0-9]+> on a@$H\$" $h whereis fo --at $h
  until_k 20 "^class( <[abc]@$H\.[0-9]+>){3}\$" $h groups --at $h
  until_k 10 "^solo <a@$H" $h whereis solo --at $h
done
grep -q 'failover fo on a@'"$H"' b@'"$H"' c@'"$H" "$T/c.out" || fail "c's banner: $(head -20 "$T/c.out")"
[ "$(running a b c)" = 1 ] || fail "fo runs on $(running a b c) nodes before the cut"

# --- cut a's link: the partitions {a} and {b, c} -------------------------------
t0=$(now_ms)
ip -n ${ID}br link set k17bva down
# Meanwhile, on b: when the group has lost a's member (a poller in the background).
( end=$((SECONDS + 15))
  while [ $SECONDS -lt $end ]; do
    k b groups --at b 2>/dev/null | grep -Eq "^class( <[bc]@$H\.[0-9]+>){2}\$" && { now_ms > "$T/group_lost"; exit 0; }
    sleep 0.05
  done ) &
gpoll=$!
fo_answers_from 15 b c b c
[ -n "$answered" ] || fail "fo never answered from b after the cut; last: $out"
[ -n "$answered" ] && echo "figure: netns_failover_after_link_cut_ms $((answered - t0)) (kith call --global fo answered from b; defaults: heartbeat timeout 2.5 s + delay 750 ms)"
until_k 15 "^class( <[bc]@$H\.[0-9]+>){2}\$" c groups --at c
wait $gpoll
[ -s "$T/group_lost" ] && echo "figure: netns_group_after_node_loss_ms $(( $(cat "$T/group_lost") - t0 )) (from the cut, on b)" ||
  fail "b's group never lost a's member"
until_k 15 "^class( <[bc]@$H\.[0-9]+>){2}\$" b groups --at b
# solo: one holder per component. {a}: a's own; {b, c}: c's, started once a was gone.
until_k 15 "^solo <c@$H" c whereis solo --at c
until_k 10 "^solo <c@$H" b whereis solo --at b
until_k 10 "^solo <a@$H" a whereis solo --at a
sa=$(solo_pid a a); sc=$(solo_pid c c); sb=$(solo_pid b b)
[ -n "$sa" ] && [ -n "$sc" ] && [ "$sa" != "$sc" ] || fail "solo per component: a says $sa, c says $sc"
[ "$sb" = "$sc" ] || fail "b and c (one component) disagree on solo: $sb vs $sc"
# The minority stops fo (it lost its majority); the majority runs it once.
deadline=$((SECONDS + 10))
until [ "$(running a)" = 0 ] || [ $SECONDS -ge $deadline ]; do sleep 0.1; done
[ "$(running a)" = 0 ] || fail "a still runs fo without a majority"
for i in 1 2 3 4 5; do [ "$(running b c)" = 1 ] || twice=1; done
[ $twice = 0 ] || fail "fo ran on both b and c (or on neither after the failover) in the majority partition"
k c whereis fo --at c | grep -q "on b@$H" || fail "c's view of fo: $(k c whereis fo --at c 2>&1)"

# --- heal: a's link back ---------------------------------------------------------
t1=$(now_ms)
ip -n ${ID}br link set k17bva up
until_k 20 "^class( <[abc]@$H\.[0-9]+>){3}\$" c groups --at c &&
  echo "figure: netns_group_after_heal_ms $(( $(now_ms) - t1 )) (from the link up, on c; includes reconnection by beacons)"
until_k 10 "^class( <[abc]@$H\.[0-9]+>){3}\$" a groups --at a
until_k 10 "^class( <[abc]@$H\.[0-9]+>){3}\$" b groups --at b
# Exactly one solo survives, the same for all; the other instance ended.
deadline=$((SECONDS + 20)); agreed=
while [ $SECONDS -lt $deadline ]; do
  pa=$(solo_pid a a); pb=$(solo_pid b b); pc=$(solo_pid c c)
  if [ -n "$pa" ] && [ "$pa" = "$pb" ] && [ "$pb" = "$pc" ]; then agreed=$(now_ms); break; fi
  sleep 0.1
done
if [ -n "$agreed" ]; then
  echo "figure: netns_global_name_after_heal_ms $((agreed - t1)) (all three name one holder of solo)"
  loser=$sa; [ "$pa" = "$sa" ] && loser=$sc
  deadline=$((SECONDS + 10))
  until ! k c send "$loser" '"x"' 2>/dev/null || [ $SECONDS -ge $deadline ]; do sleep 0.1; done
  k c send "$loser" '"x"' 2>/dev/null && fail "the losing solo instance $loser is still alive"
else
  fail "no agreement on solo after the heal: a=$pa b=$pb c=$pc"
fi
# a returns as the first of fo's list: it takes fo back (handover, never two).
fo_answers_from 20 a b a b c
[ -n "$answered" ] && echo "figure: netns_takeover_after_heal_ms $((answered - t1)) (kith call --global fo answered from a again)" ||
  fail "a never took fo back; last: $out"
[ $twice = 0 ] || fail "fo ran on two nodes at once during the takeover"

if [ $fails -ne 0 ]; then for f in "$T"/*.out; do echo "== $f"; cat "$f"; done; exit 1; fi
echo "availability netns: all passed"
