#!/usr/bin/env bash
# Per-grant limits from the command line (kith::grant_limits): kith grant
# create --limits, shown by kith grant list (table and JSON) and by kith
# grant show on the grantee's file, held against the grantee (spawned=2: the
# third actor is refused, naming the limit), changed by kith grant limits on
# a live session (never by the grantee), stored in the table of a node that
# is not running; each limit at 0 and above its maximum refused before any
# grant exists, the message naming that limit and its own bounds; and
# kith grant list in a key directory no node has used creates nothing. Beacons stay on loopback; everything lives in $T.
set -uo pipefail
KITH=$1
. "$(dirname "$0")/lib.sh"
scratch  # $T, $BP, $NET, pids=() (lib.sh)
run() { run_as alice "$@"; }  # as alice (lib.sh), with no cookie or network flags
has() { printf '%s\n' "$3" | grep -qF -- "$2" || fail "$1: '$3' lacks '$2'"; }

run "help" 0 grant --help && has help "--limits L" "$out"
has "help names the defaults" "pending (calls in flight, default 64)" "$out"
has "help names limits" "kith grant limits LABEL [L]" "$out"

# A key directory no node has used: the read-only list says so and creates
# nothing (no node key, no cookie cache); changing a grant there names why.
run_as fresh "list, no node ever" 0 grant list && has "no table" "grants of key directory $T/fresh: none" "$out"
run_as fresh "list json, no node ever" 0 grant list --json && [ "$out" = "[]" ] || fail "json of no table: $out"
run_as fresh "limits, no node ever" 1 grant limits bob pending=8 &&
  has "limits, no table" "grant limits: no grant labelled \"bob\": key directory $T/fresh has no grant table" "$err"
run_as fresh "revoke, no node ever" 1 grant revoke bob && has "revoke, no table" "has no grant table" "$err"
[ -z "$(ls -A "$T/fresh" 2>/dev/null)" ] || fail "a read-only grant command created files: $(ls -A "$T/fresh")"

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

# Bob sees his limits in the file he was given.
run "show" 0 grant show "$T/bob.grant" && has "show" "limits       pending 64 (default), spawned 2, queued" "$out"
has "show names the node" "the grant 'bob' to node alice@" "$out"
printf '%s' "$out" | grep -q "client-secret-key\|$(grep client-secret-key "$T/bob.grant" | cut -c20-40)" &&
  fail "show printed the secret key: $out"
run "show json" 0 grant show --json "$T/bob.grant" && has "show json" '"limits":"spawned=2"' "$out"
has "show json in force" '"spawned":2' "$out"
grep -q '^kith-grant 3$' "$T/bob.grant" || fail "a grant with limits is not version 3: $(head -3 "$T/bob.grant")"
grep -q '^kith-grant 1$' "$T/carol.grant" || fail "a grant without limits is not version 1: $(head -3 "$T/carol.grant")"
run "show carol" 0 grant show "$T/carol.grant" && has "show defaults" "limits       pending 64 (default), spawned 256 (default)" "$out"

B=(--grant "$T/bob.grant" --cookie bobs-own "${NET[@]}")
run "bob spawns" 0 spawn alice echo server "${B[@]}"
# Bob cannot change his own limits: the grants service is never granted.
run "bob raises his limits" 1 call alice grants set_limits '"bob"' '"spawned=4096"' "${B[@]}" &&
  has "bob refused" "unauthorized" "$err"
run "bob's limits unchanged" 0 grant list --json "${A[@]}" && has "unchanged" '"limits":"spawned=2"' "$out"
# A grantee's actors end with its sessions, and each kith command is one
# session: the limit is held against one holder that keeps its session, Bob
# in Python (when the module is built), with the file kith grant create wrote.
if [ -n "${KITH_PYTHONPATH:-}" ]; then
  # Alice raises the limit while Bob's session lives (kith grant limits):
  # his next spawn is held to the new one, on the same session.
  out=$(KITH_HOME=$T/alice PYTHONPATH="$KITH_PYTHONPATH" "${KITH_PYTHON:-python3}" - "$T/bob.grant" "$T/bob" \
        "$KITH" 2>&1 <<'PY'
import subprocess, sys, kith
with kith.Node("bob@localhost", listen="tcp://127.0.0.1:0", cookie="bobs-own", key_dir=sys.argv[2],
               discovery=False) as bob:
    alice = bob.connect(sys.argv[1])
    print([type(bob.spawn(alice, "echo", "server")).__name__ for _ in range(2)])
    try:
        bob.spawn(alice, "echo", "server")
    except kith.Overloaded as e:
        print("third:", e.detail)
    try:
        bob.call(alice, "grants", "set_limits", "bob", "spawned=4096")
    except kith.Unauthorized as e:
        print("bob's own set_limits:", e.code)
    r = subprocess.run([sys.argv[3], "grant", "limits", "bob", "spawned=3", "--cookie", "c1"],
                       capture_output=True, text=True)
    print("alice:", r.returncode, r.stdout.strip(), r.stderr.strip())
    print("now third:", type(bob.spawn(alice, "echo", "server")).__name__)
    try:
        bob.spawn(alice, "echo", "server")
    except kith.Overloaded as e:
        print("fourth:", e.detail)
PY
  )
  echo "python holder: $out"
  has "bob's two actors" "['Pid', 'Pid']" "$out"
  has "bob's third is over his limit" "third: limit spawned: 2 actors" "$out"
  has "bob cannot raise it" "bob's own set_limits: unauthorized" "$out"
  has "alice raises it" "alice: 0 limits of 'bob' are now spawned=3 on node alice@" "$out"
  has "in force on the live session" "now third: Pid" "$out"
  has "the new limit holds" "fourth: limit spawned: 3 actors" "$out"
fi

# With the node stopped, --limits goes into its stored table.
kill -TERM "${pids[0]}"
wait_for '^stopped$' "$T/alice.out" 10 || fail "alice did not stop"
deadline=$((SECONDS + 10)); while kill -0 "${pids[0]}" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
run "create stored" 0 grant create dave --name alice --services kvs --limits pending=8,queued=65536 --out "$T/dave.grant" "${A[@]}"
has "stored create" "; limits pending=8,queued=65536" "$out"
run "list stored" 0 grant list --json "${A[@]}" && has "stored json" '"limits":"pending=8,queued=65536"' "$out"
grep -q ' limits=pending=8,queued=65536$' "$T/alice/grants" || fail "table: $(cat "$T/alice/grants")"
run "limits stored" 0 grant limits dave relations=100 "${A[@]}" &&
  has "limits stored" "limits of 'dave' are now relations=100 on the stored table" "$out"
grep -q ' limits=relations=100$' "$T/alice/grants" || fail "table after limits: $(cat "$T/alice/grants")"
run "limits default" 0 grant limits dave default "${A[@]}" && has "default" "are now default" "$out"
run "limits unknown" 1 grant limits nobody pending=8 "${A[@]}" &&
  has "unknown" 'no grant labelled "nobody"' "$err"
run "limits bad" 2 grant limits dave pending=2000 "${A[@]}" && has "bad" "pending must be 1..1024" "$err"
run "revoke dave" 0 grant revoke dave "${A[@]}"
run "limits revoked" 1 grant limits dave pending=8 "${A[@]}" && has "revoked" "is revoked" "$err"

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; cat "$T/alice.out"; exit 1; fi
echo "cli grant limits ok"
