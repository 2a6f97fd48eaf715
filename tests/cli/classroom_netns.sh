#!/usr/bin/env bash
# A classroom of identical Pis (issue 14), typed as students type it: network
# namespaces on a bridge (made and removed here, names unique to this run),
# each "Pi" with its own UTS namespace and the hostname raspberrypi.
#  1. three Pis, `kith node --cookie class` with no name: unique default
#     names, everyone finds everyone, nobody flaps for 10 s;
#  2. two nodes given the same name: both are told, the third node keeps one;
#  3. the README's two-terminal session on ONE Pi exactly as written (no port
#     typed), plus a third node; and on a Pi with no network at all;
#  4. grant create against a node on another port; the grant file's
#     endpoints; the friend's message when the owner's node is offline;
#  5. kith watch stopped with SIGINT prints no nodedown.
set -uo pipefail
KITH=$1
. "$(dirname "$0")/lib.sh"
if [ "$(id -u)" -ne 0 ] || ! ip -V >/dev/null 2>&1 || ! command -v unshare >/dev/null; then
  echo "needs root, iproute2 and unshare: skipped"; exit 0
fi
# namespaces of an earlier run that was killed (kk<pid>x...), whose process is gone
for n in $(ip netns list 2>/dev/null | sed -n 's/^\(kk[0-9]*x[0-9]*[a-z0-9]*\).*/\1/p'); do
  p=${n#kk}; p=${p%%x*}; kill -0 "$p" 2>/dev/null || ip netns del "$n" 2>/dev/null
done
T=$(mktemp -d)
ID=kk$$x$((RANDOM % 1000))
NH=6
pids=()
declare -A P  # output file -> pid of its node (ip netns exec, unshare and sh all exec)
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for i in $(seq 0 $((NH - 1))); do ip netns del ${ID}h$i 2>/dev/null; done
  ip netns del ${ID}br 2>/dev/null; rm -rf "$T"
}
trap cleanup EXIT
set -e
ip netns add ${ID}br
ip -n ${ID}br link add br0 type bridge; ip -n ${ID}br link set br0 up
for i in $(seq 0 $((NH - 1))); do
  ip netns add ${ID}h$i
  ip -n ${ID}h$i link set lo up
  [ $i -eq 5 ] && continue  # h5: a Pi with no network at all (loopback only)
  ip -n ${ID}br link add v$i type veth peer name eth0 netns ${ID}h$i
  ip -n ${ID}br link set v$i master br0; ip -n ${ID}br link set v$i up
  ip -n ${ID}h$i addr add 10.79.0.$((i + 1))/24 brd + dev eth0
  ip -n ${ID}h$i link set eth0 up
done
set +e
# on HOST HOME cmd...: runs cmd on Pi HOST (hostname raspberrypi) as the user
# whose key directory is $T/HOME.
on() {
  local h=$1 home=$2; shift 2
  KITH_HOME=$T/$home ip netns exec ${ID}h$h unshare --uts sh -c 'hostname raspberrypi && exec "$@"' sh "$@"
}
bg() { # host home out cmd...: in the background, output to $T/out
  local h=$1 home=$2 out=$3; shift 3
  KITH_HOME=$T/$home ip netns exec ${ID}h$h unshare --uts sh -c 'hostname raspberrypi && exec "$@"' sh "$@" \
    > "$T/$out" 2>&1 &
  pids+=($!); P[$out]=$!
  disown $!
}
stop() { # out...: SIGTERM the nodes that write $T/out, wait for "stopped"
  for o in "$@"; do kill -TERM "${P[$o]}"; done
  for o in "$@"; do wait_for '^stopped$' "$T/$o" 10 || fail "$o did not stop"; done
}

# --- 1. three identical Pis, no name typed ------------------------------------
for i in 0 1 2; do bg $i pi$i pi$i.out "$KITH" node --cookie class; done
for i in 0 1 2; do wait_for '^ready' "$T/pi$i.out" 30 || exit 1; done
names=()
for i in 0 1 2; do names+=("$(sed -n 's/^node //p' "$T/pi$i.out")"); done
echo "default names: ${names[*]}"
for n in "${names[@]}"; do
  printf '%s' "$n" | grep -Eq '^kith-[0-9a-f]{4}@raspberrypi$' || fail "default name $n"
done
[ "$(printf '%s\n' "${names[@]}" | sort -u | wc -l)" -eq 3 ] || fail "default names not unique: ${names[*]}"
for i in 0 1 2; do
  grep -q '^cookie from --cookie, cluster id [0-9a-f]\{8\}' "$T/pi$i.out" || fail "pi$i: no cookie line"
  for j in 0 1 2; do
    [ $i -eq $j ] && continue
    # The public port 4370, or the member port (any free port) that members
    # dial when a beacon announces it (docs/security.md, "The member port").
    wait_for "^nodeup ${names[$j]} trust=cluster endpoint=tcp://10.79.0.$((j + 1)):[0-9]*" "$T/pi$i.out" 15 ||
      fail "pi$i never saw ${names[$j]}"
  done
done
deadline=$((SECONDS + 10)); while [ $SECONDS -lt $deadline ]; do sleep 0.5; done  # watching for flaps
for i in 0 1 2; do
  [ "$(grep -c '^nodeup' "$T/pi$i.out")" -eq 2 ] || fail "pi$i flapped: $(grep -c '^nodeup' "$T/pi$i.out") nodeups"
  grep -q '^nodedown' "$T/pi$i.out" && fail "pi$i printed nodedown"
done
out=$(on 2 cli2 "$KITH" nodes --cookie class 2>/dev/null)
for n in "${names[@]}"; do printf '%s' "$out" | grep -q "^$n  *cluster" || fail "kith nodes lacks $n: $out"; done
short=${names[0]%@*}
out=$(on 1 cli1 "$KITH" call "$short" kvs store '"weather"' '"fine"' --cookie class 2>&1)
[ "$out" = true ] || fail "call by default short name: $out"

# --- 2. two nodes given the same name ------------------------------------------
stop pi0.out pi1.out pi2.out
bg 0 pi0 sam0.out "$KITH" node --name sam --cookie class
wait_for '^ready' "$T/sam0.out" 30 || exit 1
bg 2 pi2 third.out "$KITH" node --name third --cookie class
wait_for '^nodeup sam@raspberrypi' "$T/third.out" 15 || fail "third never saw sam"
bg 1 pi1 sam1.out "$KITH" node --name sam --cookie class
wait_for '^ready' "$T/sam1.out" 30 || exit 1
wait_for '^name clash: another node calls itself sam@raspberrypi' "$T/sam0.out" 10 || fail "sam0 not told of the clash"
wait_for '^name clash: another node calls itself sam@raspberrypi' "$T/sam1.out" 10 || fail "sam1 not told of the clash"
deadline=$((SECONDS + 10)); while [ $SECONDS -lt $deadline ]; do sleep 0.5; done
[ "$(grep -c '^nodeup sam@' "$T/third.out")" -eq 1 ] || fail "third flapped on sam: $(grep -c '^nodeup sam@' "$T/third.out")"
grep -q '^nodedown sam@' "$T/third.out" && fail "third lost sam"
[ "$(grep -c '^name clash' "$T/sam1.out")" -eq 1 ] || fail "sam1 repeats the clash"
out=$(on 2 cli2 "$KITH" nodes --json --cookie class 2>/dev/null)
printf '%s' "$out" | grep -q '"name":"sam@raspberrypi"' || fail "nodes lacks sam: $out"
stop sam0.out sam1.out third.out

# --- 3. the README's session on one Pi, exactly as written ---------------------
# terminal 1, 2 and 3 of one user on h3 (one key directory)
bg 3 me gandalf.out "$KITH" node --name gandalf --cookie abc
wait_for '^ready' "$T/gandalf.out" 30 || exit 1
bg 3 me bilbo.out "$KITH" node --name bilbo --cookie abc
wait_for '^ready' "$T/bilbo.out" 30 || exit 1
grep -q '^endpoint tcp://10.79.0.4:4370$' "$T/gandalf.out" || fail "gandalf not on 4370: $(grep endpoint "$T/gandalf.out")"
grep -q '^endpoint tcp://10.79.0.4:4372$' "$T/bilbo.out" || fail "bilbo not on 4372: $(grep endpoint "$T/bilbo.out")"
wait_for '^nodeup bilbo@raspberrypi' "$T/gandalf.out" 10 || fail "gandalf never saw bilbo"
wait_for '^nodeup gandalf@raspberrypi' "$T/bilbo.out" 10 || fail "bilbo never saw gandalf"
grep '^nodeup' "$T/gandalf.out" | grep -q 'endpoint=tcp://[0-9.]*:[0-9]' || fail "gandalf's nodeup has no port: $(grep nodeup "$T/gandalf.out")"
t3() { on 3 me "$KITH" "$@"; }
out=$(t3 call gandalf kvs store '"weather"' '"fine"' --cookie abc 2>&1); [ "$out" = true ] || fail "README store: $out"
out=$(t3 call gandalf kvs lookup '"weather"' --cookie abc 2>&1); [ "$out" = '["ok","fine"]' ] || fail "README lookup: $out"
out=$(t3 send echo@bilbo '"abc"' --cookie abc 2>&1) || fail "README send: $out"
wait_for 'echo got "abc"' "$T/bilbo.out" 10 || fail "bilbo's echo never got abc"
out=$(t3 spawn bilbo echo server --cookie abc 2>&1) || fail "README spawn: $out"
pid=$(printf '%s' "$out" | sed -n 's/^{"\$pid":"\(<bilbo@raspberrypi\.[0-9]*>\)"}$/\1/p')
[ -n "$pid" ] || fail "spawn printed $out"
out=$(t3 send "$pid" 17 --cookie abc 2>&1) || fail "README send to pid: $out"
out=$(t3 call bilbo demo node --cookie abc 2>&1); [ "$out" = '"bilbo@raspberrypi"' ] || fail "README demo: $out"
# a third node, still no port typed
bg 3 me frodo.out "$KITH" node --name frodo --cookie abc
wait_for '^ready' "$T/frodo.out" 30 || exit 1
grep -q '^endpoint tcp://10.79.0.4:4373$' "$T/frodo.out" || fail "frodo not on 4373"
out=$(t3 ping frodo --cookie abc 2>&1); [ "$out" = pong ] || fail "ping frodo: $out"
# the same name twice on one machine: refused at once, with who holds it
rc=0; err=$(t3 node --name gandalf --cookie abc 2>&1 >/dev/null) || rc=$?
[ $rc -eq 1 ] && printf '%s' "$err" | grep -q '^kith: node: a node named gandalf@raspberrypi is already running on this machine (pid [0-9]*, port 4370); choose another name with --name$' ||
  fail "second gandalf: rc=$rc $err"
# from Python, by short name, on the same Pi
if [ -n "${KITH_PYTHONPATH:-}" ]; then
  out=$(on 3 me env PYTHONPATH="$KITH_PYTHONPATH" python3 -c '
import kith
with kith.Node("py", port=0, cookie="abc") as n:
    n.find("gandalf", timeout=5)
    print(n.call("gandalf", "kvs", "lookup", "weather"))
' 2>&1); [ "$out" = "['ok', 'fine']" ] || fail "python on one Pi: $out"
fi
# on a Pi without any network: the registry in the key directory
bg 5 lonely g5.out "$KITH" node --name gandalf --cookie abc
wait_for '^ready' "$T/g5.out" 30 || exit 1
bg 5 lonely b5.out "$KITH" node --name bilbo --cookie abc
wait_for '^ready' "$T/b5.out" 30 || exit 1
out=$(on 5 lonely "$KITH" call bilbo kvs store '"k"' 1 --cookie abc 2>&1); [ "$out" = true ] || fail "no network: $out"
out=$(on 5 lonely "$KITH" nodes --cookie abc 2>/dev/null)
printf '%s' "$out" | grep -q '^bilbo@raspberrypi  *cluster' || fail "no network: nodes: $out"

# --- 4. grants: bilbo (port 4372) lets a friend on h4 use kvs -------------------
rc=0; err=$(t3 grant create bob --services kvs --out "$T/bob.grant" --cookie abc 2>&1) || rc=$?
[ $rc -eq 2 ] && printf '%s' "$err" | grep -q 'several nodes of key directory .* run on this machine: bilbo@raspberrypi (port 4372) frodo@raspberrypi (port 4373) gandalf@raspberrypi (port 4370); say which with --name$' ||
  fail "grant create with three nodes: rc=$rc $err"
out=$(t3 grant create bob --name bilbo --services kvs --out "$T/bob.grant" --cookie abc 2>&1) || fail "grant create: $out"
printf '%s' "$out" | grep -q "^grant 'bob' on bilbo@raspberrypi: kvs" || fail "grant create said: $out"
grep -q '^node: bilbo@raspberrypi$' "$T/bob.grant" || fail "grant file is not for bilbo: $(cat "$T/bob.grant")"
grep -q '^endpoint: tcp://10.79.0.4:4372$' "$T/bob.grant" || fail "grant file endpoints: $(grep endpoint "$T/bob.grant")"
grep -q '^endpoint: tcp://127\.' "$T/bob.grant" && fail "grant file lists loopback: $(grep endpoint "$T/bob.grant")"
cp "$T/bob.grant" "$T/friend.grant"; chmod 600 "$T/friend.grant"
# the friend has a node of their own on 4370 (another key): never dialled
bg 4 friend fnode.out "$KITH" node --name mine --cookie friends-own
wait_for '^ready' "$T/fnode.out" 30 || exit 1
out=$(on 4 friend "$KITH" call --grant "$T/friend.grant" bilbo kvs store '"bob"' '"hi"' 2>&1); [ "$out" = true ] || fail "friend's call: $out"
stop bilbo.out
rc=0; err=$(on 4 friend "$KITH" call --grant "$T/friend.grant" bilbo kvs keys --timeout 2 2>&1) || rc=$?
[ $rc -eq 1 ] && [ "$err" = "kith: cannot reach bilbo@raspberrypi with the grant 'bob': timeout: bilbo@raspberrypi is not answering at tcp://10.79.0.4:4372 (is its node running? those addresses come from the grant file; ask its owner)" ] ||
  fail "owner offline: rc=$rc $err"
chmod 644 "$T/friend.grant"
rc=0; err=$(on 4 friend "$KITH" call --grant "$T/friend.grant" bilbo kvs keys 2>&1) || rc=$?
[ $rc -eq 1 ] && [ "$err" = "kith: grant file $T/friend.grant has mode 0644 (readable or writable by others) and holds a secret; it must be 0600. Run: chmod 600 $T/friend.grant" ] ||
  fail "loose grant file: rc=$rc $err"

# --- 5. kith watch stopped with Ctrl-C invents no nodedown ----------------------
for fmt in text json; do
  flag=; [ $fmt = json ] && flag=--json
  KITH_HOME=$T/me ip netns exec ${ID}h3 "$KITH" watch $flag --cookie abc > "$T/watch.$fmt" 2>&1 &
  wp=$!; pids+=($wp)
  wait_for 'gandalf@raspberrypi' "$T/watch.$fmt" 10 || fail "watch ($fmt) never saw gandalf"
  wait_for 'frodo@raspberrypi' "$T/watch.$fmt" 10 || fail "watch ($fmt) never saw frodo"
  kill -INT $wp
  deadline=$((SECONDS + 10)); while kill -0 $wp 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
  wait $wp; rc=$?
  [ $rc -eq 0 ] || fail "watch ($fmt) exit $rc"
  grep -q nodedown "$T/watch.$fmt" && fail "watch ($fmt) invented nodedown: $(cat "$T/watch.$fmt")"
done

if [ $fails -ne 0 ]; then
  echo "$fails failure(s)"; for f in "$T"/*.out; do echo "== $f"; tail -30 "$f"; done
  exit 1
fi
echo "classroom ok"
