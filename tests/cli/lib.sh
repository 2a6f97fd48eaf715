# Shared by the command-line test scripts (sourced).
fails=0
# This run's scratch: a temporary directory $T, a beacon port $BP on loopback
# ($NET for the kith commands) and the node processes in pids=(), all killed
# and removed at exit.
scratch() {
  T=$(mktemp -d)
  BP=$((20000 + RANDOM % 20000))
  pids=()
  trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
  NET=(--beacon-port "$BP" --broadcast 127.255.255.255)
}
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
wait_for() { # pattern file seconds: until a line of the file matches, within a deadline
  local deadline=$((SECONDS + $3))
  until grep -q -- "$1" "$2"; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for '$1' in $2:"; cat "$2"; return 1; }
    sleep 0.05
  done
}
