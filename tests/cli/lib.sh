# Shared by the command-line test scripts (sourced).
fails=0
# This run's scratch: a temporary directory $T, a beacon port $BP on loopback
# ($NET for the kith commands) and the node processes in pids=(), all killed
# and removed at exit.
scratch() {
  T=$(mktemp -d)
  BP=$((10000 + RANDOM % 20000))  # below the ephemeral range (32768-60999)
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
# Nodes on loopback for the availability scripts (after scratch; $KITH set,
# $T/cookie written): start_node NAME [options...] runs `kith node` with
# NODE_OPTS and the options, output in $T/NAME.out, pid in nodepid[NAME],
# and waits for it to be ready.
declare -A nodepid
NODE_OPTS=()
start_node() {
  local name=$1; shift
  KITH_HOME=$T/$name "$KITH" node --name "$name" --listen tcp://127.0.0.1:0 --cookie-file "$T/cookie" "${NET[@]}" \
    "${NODE_OPTS[@]}" "$@" > "$T/$name.out" 2>&1 &
  pids+=($!); nodepid[$name]=$!
  disown $!
  wait_for '^ready' "$T/$name.out" 30 || exit 1
}
# run WHAT EXPECTED_RC KITH-ARGS...: a command of the cluster, stdout in $out,
# stderr in $err; a failure must say so in one line.
run() {
  local what=$1 want=$2; shift 2
  out=$(KITH_HOME=$T/cli "$KITH" "$@" --cookie-file "$T/cookie" "${NET[@]}" 2> "$T/err"); rc=$?
  err=$(cat "$T/err")
  if [ "$rc" -ne "$want" ]; then fail "$what: exit $rc, wanted $want; out=$out err=$err"; return 1; fi
  if [ "$want" -ne 0 ] && [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ]; then fail "$what: stderr is not one line: $err"; fi
  return 0
}
# run_as WHO WHAT EXPECTED_RC KITH-ARGS...: a kith command with key
# directory $T/WHO and nothing added, stdout in $out, stderr in $err; a
# failure must say so in one line.
run_as() {
  local who=$1 what=$2 want=$3; shift 3
  out=$(KITH_HOME=$T/$who "$KITH" "$@" 2> "$T/err"); rc=$?
  err=$(cat "$T/err")
  [ "$rc" -eq "$want" ] || { fail "$what: exit $rc, wanted $want; out=$out err=$err"; return 1; }
  [ "$want" -eq 0 ] || [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "$what: stderr is not one line: $err"
  return 0
}
expect_err() { printf '%s' "$err" | grep -q -- "$2" || fail "$1: stderr '$err' lacks '$2'"; }
