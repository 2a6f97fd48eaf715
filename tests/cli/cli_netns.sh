#!/usr/bin/env bash
# The `kith` command across hosts: three network namespaces on a bridge
# (made and removed here). Nodes started with only a name and a cookie find
# each other by broadcast; a user on a third host calls them by short name
# with no address typed, lists them, and pings them.
set -uo pipefail
KITH=$1
. "$(dirname "$0")/lib.sh"
if [ "$(id -u)" -ne 0 ] || ! ip -V >/dev/null 2>&1; then echo "needs root and iproute2: skipped"; exit 0; fi
T=$(mktemp -d)
ID=kc$$x$((RANDOM % 1000))
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for i in 0 1 2; do ip netns del ${ID}h$i 2>/dev/null; done
  ip netns del ${ID}br 2>/dev/null; rm -rf "$T"
}
trap cleanup EXIT
set -e
ip netns add ${ID}br
ip -n ${ID}br link add br0 type bridge; ip -n ${ID}br link set br0 up
for i in 0 1 2; do
  ip netns add ${ID}h$i
  ip -n ${ID}br link add v$i type veth peer name eth0 netns ${ID}h$i
  ip -n ${ID}br link set v$i master br0; ip -n ${ID}br link set v$i up
  ip -n ${ID}h$i addr add 10.78.0.$((i + 1))/24 brd + dev eth0
  ip -n ${ID}h$i link set eth0 up; ip -n ${ID}h$i link set lo up
done
set +e
node() { # host name
  KITH_HOME=$T/$2 ip netns exec ${ID}h$1 "$KITH" node --name "$2" --cookie classroom-42 > "$T/$2.out" 2>&1 &
  pids+=($!)
  disown $!  # cleanup kills it; no job-control chatter
  wait_for '^ready' "$T/$2.out" 30 || exit 1
}
node 0 gandalf
node 1 bilbo
wait_for '^nodeup bilbo@.*endpoint=tcp://10.78.0.2' "$T/gandalf.out" 10 || fail "gandalf never saw bilbo"
wait_for '^nodeup gandalf@.*endpoint=tcp://10.78.0.1' "$T/bilbo.out" 10 || fail "bilbo never saw gandalf"
cli() { KITH_HOME=$T/cli ip netns exec ${ID}h2 "$KITH" "$@" --cookie classroom-42; }
start=$SECONDS
out=$(cli call gandalf kvs store '"weather"' '"fine"') || fail "store: $out"
[ "$out" = true ] || fail "store printed $out"
out=$(cli call bilbo kvs lookup '"weather"')
[ "$out" = '"undefined"' ] || fail "bilbo's kvs is its own: $out"
out=$(cli call gandalf kvs lookup '"weather"')
[ "$out" = '["ok","fine"]' ] || fail "lookup printed $out"
[ $((SECONDS - start)) -le 15 ] || fail "three calls took $((SECONDS - start)) s"
out=$(cli nodes --json)
echo "$out" | grep -q '"endpoint":"tcp://10.78.0.1:4370"' || fail "nodes: $out"
echo "$out" | grep -q '"endpoint":"tcp://10.78.0.2:4370"' || fail "nodes: $out"
out=$(cli ping bilbo) || fail "ping bilbo: $out"
# Cut bilbo's link: gandalf says nodedown (timeout) within the heartbeat bound; back: nodeup.
ip -n ${ID}br link set v1 down
wait_for '^nodedown bilbo@.*reason=timeout' "$T/gandalf.out" 10 || fail "no nodedown on link cut"
out=$(cli ping bilbo --timeout 2); [ "$out" = pang ] || fail "ping of a cut host printed $out"
ip -n ${ID}br link set v1 up
deadline=$((SECONDS + 15))
until [ "$(grep -c '^nodeup bilbo@' "$T/gandalf.out")" -ge 2 ] || [ $SECONDS -ge $deadline ]; do sleep 0.1; done
[ "$(grep -c '^nodeup bilbo@' "$T/gandalf.out")" -ge 2 ] || fail "no nodeup after the link came back"
if [ $fails -ne 0 ]; then for f in "$T"/*.out; do echo "== $f"; cat "$f"; done; exit 1; fi
echo "cli netns ok"
