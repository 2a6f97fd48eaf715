# Shared by the command-line test scripts (sourced).
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
wait_for() { # pattern file seconds: until a line of the file matches, within a deadline
  local deadline=$((SECONDS + $3))
  until grep -q -- "$1" "$2"; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for '$1' in $2:"; cat "$2"; return 1; }
    sleep 0.05
  done
}
