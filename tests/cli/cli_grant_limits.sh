#!/usr/bin/env bash
# Per-grant limits from the command line (kith::grant_limits): kith grant
# create --limits, shown by kith grant list (table and JSON), held against the
# grantee (spawned=2: the third actor is refused, naming the limit), stored in
# the table of a node that is not running; and each limit at 0 and above its
# maximum refused before any grant exists, the message naming that limit and
# its own bounds. Beacons stay on loopback; everything lives in $T.
set -uo pipefail
KITH=$1
. "$(dirname "$0")/lib.sh"
scratch  # $T, $BP, $NET, pids=() (lib.sh)
run() { run_as alice "$@"; }  # as alice (lib.sh), with no cookie or network flags
has() { printf '%s\n' "$3" | grep -qF -- "$2" || fail "$1: '$3' lacks '$2'"; }

run "help" 0 grant --help && has help "--limits L" "$out"
has "help names the defaults" "pending (calls in flight, default 64)" "$out"

mkdir -p "$T/alice"
KITH_HOME=$T/alice "$KITH" node --name alice --listen tcp://127.0.0.1:0 --cookie c1 "${NET[@]}" > "$T/alice.out" 2>&1 &
pids+=($!); disown $!
wait_for '^ready' "$T/alice.out" 30 || exit 1
A=(--cookie c1)

# Each limit at 0 and above its maximum: exit 2, the limit's own bounds, no grant.
for spec in pending:64 spawned:256 queued:4194304 relations:4096; do
  name=${spec%%:*}; def=${spec#*:}; max=$((16 * def))
  for v in 0 $((max + 1)); do
    for limits in "$name=$v" "relations=100,$name=$v" "$name=$v,pending=8"; do
      [ "$limits" = "relations=100,relations=$v" ] && continue
      [ "$limits" = "pending=$v,pending=8" ] && continue
      run "--limits $limits" 2 grant create eve --services kvs --limits "$limits" --out "$T/eve.grant" "${A[@]}" || continue
      has "--limits $limits" "kith: grant create: --limits: bad limits \"$limits\": $name must be 1..$max (16x the default $def" "$err"
      has "--limits $limits" "; got $v)" "$err"
    done
  done
done
run "--limits calls=3" 2 grant create eve --services kvs --limits calls=3 --out "$T/eve.grant" "${A[@]}" &&
  has "unknown limit" 'unknown limit "calls" (pending, spawned, queued, relations)' "$err"
run "--limits 8" 2 grant create eve --services kvs --limits 8 --out "$T/eve.grant" "${A[@]}" &&
  has "not NAME=N" '"8" is not NAME=N' "$err"
[ -e "$T/eve.grant" ] && fail "a grant file was written for bad limits"

# Good limits: said when created, listed, held against the grantee.
run "create with limits" 0 grant create bob --services echo --rate unlimited --limits spawned=2 --out "$T/bob.grant" "${A[@]}"
has "create says" "grant 'bob' on alice@" "$out"
has "create says the limits" "; limits spawned=2" "$out"
run "create without" 0 grant create carol --services kvs --out "$T/carol.grant" "${A[@]}"
run "list" 0 grant list "${A[@]}"
printf '%s\n' "$out" | grep -q '^LABEL .* LIMITS$' || fail "list header: $out"
printf '%s\n' "$out" | grep -q '^bob  *echo  *unlimited .* spawned=2$' || fail "list bob: $out"
printf '%s\n' "$out" | grep -q '^carol  *kvs .* default$' || fail "list carol: $out"
run "list json" 0 grant list --json "${A[@]}" && has json '"limits":"spawned=2"' "$out"
printf '%s' "$out" | grep -q '"label":"eve"' && fail "a grant was made for bad limits: $out"

B=(--grant "$T/bob.grant" --cookie bobs-own "${NET[@]}")
run "bob spawns" 0 spawn alice echo server "${B[@]}"
# A grantee's actors end with its sessions, and each kith command is one
# session: the limit is held against one holder that keeps its session, Bob
# in Python (when the module is built), with the file kith grant create wrote.
if [ -n "${KITH_PYTHONPATH:-}" ]; then
  out=$(PYTHONPATH="$KITH_PYTHONPATH" "${KITH_PYTHON:-python3}" - "$T/bob.grant" "$T/bob" 2>&1 <<'PY'
import sys, kith
with kith.Node("bob@localhost", listen="tcp://127.0.0.1:0", cookie="bobs-own", key_dir=sys.argv[2],
               discovery=False) as bob:
    alice = bob.connect(sys.argv[1])
    print([type(bob.spawn(alice, "echo", "server")).__name__ for _ in range(2)])
    try:
        bob.spawn(alice, "echo", "server")
    except kith.Overloaded as e:
        print("third:", e.detail)
PY
  )
  echo "python holder: $out"
  has "bob's two actors" "['Pid', 'Pid']" "$out"
  has "bob's third is over his limit" "third: limit spawned" "$out"
fi

# With the node stopped, --limits goes into its stored table.
kill -TERM "${pids[0]}"
wait_for '^stopped$' "$T/alice.out" 10 || fail "alice did not stop"
deadline=$((SECONDS + 10)); while kill -0 "${pids[0]}" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
run "create stored" 0 grant create dave --name alice --services kvs --limits pending=8,queued=65536 --out "$T/dave.grant" "${A[@]}"
has "stored create" "; limits pending=8,queued=65536" "$out"
run "list stored" 0 grant list --json "${A[@]}" && has "stored json" '"limits":"pending=8,queued=65536"' "$out"
grep -q ' limits=pending=8,queued=65536$' "$T/alice/grants" || fail "table: $(cat "$T/alice/grants")"

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; cat "$T/alice.out"; exit 1; fi
echo "cli grant limits ok"
