#!/usr/bin/env bash
# kith node: prints name, endpoint and fingerprint; stops cleanly on SIGINT and
# SIGTERM; creates 0600 key files; bad usage exits 2 with a one-line error.
set -euo pipefail
KITH=$1
export KITH_HOME=$(mktemp -d)/home
out=$(mktemp)
cleanup() { [ -n "${pid:-}" ] && kill -9 "$pid" 2>/dev/null || true; rm -rf "$(dirname "$KITH_HOME")" "$out"; }
trap cleanup EXIT

wait_for() { # pattern file seconds
  local deadline=$((SECONDS + $3))
  until grep -q "$1" "$2"; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for '$1'"; cat "$2"; exit 1; }
    sleep 0.05
  done
}

for sig in INT TERM; do
  : > "$out"
  "$KITH" node --name gandalf --listen tcp://127.0.0.1:0 --no-discovery --workers 2 --guest-workers 1 --network-cpu auto > "$out" 2>&1 &
  pid=$!
  wait_for '^ready' "$out" 20
  grep -Eq '^node gandalf@' "$out"
  grep -Eq '^endpoint tcp://127\.0\.0\.1:[0-9]+$' "$out"
  grep -Eq '^fingerprint [0-9a-f]{4}(:[0-9a-f]{4}){3}$' "$out"
  kill -$sig "$pid"
  rc=0; wait "$pid" || rc=$?
  pid=
  [ "$rc" -eq 0 ] || { echo "exit code $rc after SIG$sig"; cat "$out"; exit 1; }
  grep -q '^stopped$' "$out"
done

# Secrets are 0600 and never printed.
[ "$(stat -c %a "$KITH_HOME/node.key")" = 600 ]
[ "$(stat -c %a "$KITH_HOME/cookie")" = 600 ]
! grep -qF "$(cat "$KITH_HOME/node.key")" "$out"

# Bad usage: exit 2, one line on stderr.
rc=0; err=$("$KITH" node --bogus 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 2 ] && [ "$(echo "$err" | wc -l)" -eq 1 ] || { echo "bad usage: rc=$rc err=$err"; exit 1; }
rc=0; "$KITH" frobnicate 2>/dev/null || rc=$?
[ "$rc" -eq 2 ]
rc=0; "$KITH" node --listen '' 2>/dev/null || rc=$?
[ "$rc" -eq 2 ]
# Worker counts outside 1..1024: exit 2, saying what is wanted.
for opt in "--workers 0" "--guest-workers 0" "--guest-workers x" "--workers 2000"; do
  rc=0; err=$("$KITH" node $opt --no-discovery 2>&1 >/dev/null) || rc=$?
  [ "$rc" -eq 2 ] && printf '%s' "$err" | grep -q "wants a number of threads from 1 to 1024" ||
    { echo "$opt: rc=$rc err=$err"; exit 1; }
done
# --network-cpu: a CPU number, auto or off; anything else exit 2, saying so.
for v in -1 x 1024 "0 1"; do
  rc=0; err=$("$KITH" node --network-cpu "$v" --no-discovery 2>&1 >/dev/null) || rc=$?
  [ "$rc" -eq 2 ] && printf '%s' "$err" | grep -q "wants a CPU number (0 to .nproc. - 1), auto or off (got '$v')" ||
    { echo "--network-cpu $v: rc=$rc err=$err"; exit 1; }
done
# A port that is taken: exit 1 with a clear message.
: > "$out"
"$KITH" node --listen tcp://127.0.0.1:0 --no-discovery > "$out" 2>&1 &
pid=$!
wait_for '^ready' "$out" 20
ep=$(sed -n 's/^endpoint //p' "$out")
[ -n "$ep" ] || { echo "no endpoint printed"; cat "$out"; exit 1; }
rc=0; err=$("$KITH" node --name other --listen "$ep" --no-discovery 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 1 ] || { echo "taken port: rc=$rc err=$err"; exit 1; }
echo "taken port says: $err"
# A member port that is taken: exit 1, and the message names the member port
# (not the public ports, which another try would not help).
port=${ep##*:}
rc=0; err=$("$KITH" node --name other2 --member-port "$port" --no-discovery 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 1 ] && printf '%s' "$err" | grep -q "the member port $port is taken" ||
  { echo "taken member port: rc=$rc err=$err"; exit 1; }
kill -TERM "$pid"; wait "$pid"; pid=
echo "cli ok"
