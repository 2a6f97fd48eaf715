#!/usr/bin/env bash
# Issue 14 on one machine, without namespaces: grant files are written safely
# (never through a symlink, onto a device, a FIFO or a directory; an existing
# file only with --force; "-" is standard output; nothing is granted when the
# file cannot be written), grant create without a running node, the cookie
# trap (no cookie file is ever created by a client), a send to a pid that is
# not alive, `kith node -h`, grant list as a table. Everything lives in a
# temporary directory of this run; beacons stay on loopback.
set -uo pipefail
KITH=$1
. "$(dirname "$0")/lib.sh"
scratch  # $T, $BP, $NET, pids=() (lib.sh)
run() { run_as alice "$@"; }  # as alice (lib.sh), with no cookie or network flags
expect_err() { [ "$err" = "$2" ] || fail "$1: stderr '$err', wanted '$2'"; }

# kith node -h works as kith -h does
run "node -h" 0 node -h && printf '%s' "$out" | grep -q '^usage: kith node' || fail "node -h: $out"
run "call -h" 0 call -h && printf '%s' "$out" | grep -q '^usage: kith call' || fail "call -h: $out"

# grant create with no node running: says so, and what to do; no file written
mkdir -p "$T/alice"
run "grant create, no node" 1 grant create bob --services kvs --out "$T/bob.grant" --cookie c1 &&
  expect_err "no node" "kith: grant create: no node of key directory $T/alice is running on this machine; start it (kith node --name N), or give --name N to store the grant for node N, used when it starts"
[ -e "$T/bob.grant" ] && fail "a grant file was written without a node"

KITH_HOME=$T/alice "$KITH" node --name alice --listen tcp://127.0.0.1:0 --cookie c1 "${NET[@]}" > "$T/alice.out" 2>&1 &
pids+=($!); disown $!
wait_for '^ready' "$T/alice.out" 30 || exit 1
A=(--cookie c1)  # found through the registry: no --port typed

# --out: refused targets, each before any grant exists
mkdir "$T/dir"; ln -s "$T/target" "$T/link"; mkfifo "$T/fifo"; echo keep > "$T/exists"
run "out symlink" 2 grant create s1 --services kvs --out "$T/link" "${A[@]}" &&
  expect_err symlink "kith: grant create: --out $T/link: is a symbolic link; kith writes grant files only to regular files (give the real path, or a new file name)"
[ -e "$T/target" ] && fail "wrote through the symlink"
run "out directory" 2 grant create s2 --services kvs --out "$T/dir" "${A[@]}" &&
  expect_err dir "kith: grant create: --out $T/dir: is a directory; give a file name, e.g. $T/dir/bob.grant"
run "out fifo" 2 grant create s3 --services kvs --out "$T/fifo" "${A[@]}" &&
  expect_err fifo "kith: grant create: --out $T/fifo: is a FIFO; a grant file is written only to a regular file (use --out - for standard output)"
[ -p "$T/fifo" ] || fail "the fifo was replaced"
run "out exists" 2 grant create s4 --services kvs --out "$T/exists" "${A[@]}" &&
  expect_err exists "kith: grant create: --out $T/exists: exists; pass --force to replace it, or choose another file"
[ "$(cat "$T/exists")" = keep ] || fail "existing file replaced without --force"
run "out in a missing directory" 1 grant create s5 --services kvs --out "$T/nope/x.grant" "${A[@]}" &&
  expect_err missing "kith: grant create: --out $T/nope/x.grant: cannot write in $T/nope: No such file or directory"
run "grant list" 0 grant list --json "${A[@]}"
for l in s1 s2 s3 s4 s5; do printf '%s' "$out" | grep -q "\"label\":\"$l\"" && fail "grant $l exists though its file was refused"; done
ls -A "$T" | grep -q '^\..*XXXX\|^\.exists\.' && fail "temporary files left: $(ls -A "$T")"
# --force replaces a regular file of ours; the result is mode 0600
run "out --force" 0 grant create s4 --services kvs --out "$T/exists" --force "${A[@]}"
grep -q '^kith-grant 1$' "$T/exists" && [ "$(stat -c %a "$T/exists")" = 600 ] || fail "--force did not write a grant"
# --out - writes the grant to standard output, the summary to stderr
run "out -" 0 grant create s6 --services kvs --out - "${A[@]}"
printf '%s\n' "$out" | grep -q '^kith-grant 1$' || fail "--out - printed: $out"
printf '%s' "$err" | grep -q "^grant 's6' on alice@" || fail "--out - summary: $err"
# the listener is on loopback only: the file says so (nothing else reaches it)
grep -q '^endpoint: tcp://127.0.0.1:' "$T/exists" || fail "loopback-only node: $(grep endpoint "$T/exists")"
# a service the node does not have
run "unknown service" 2 grant create s7 --services kvz --out "$T/s7.grant" "${A[@]}" &&
  expect_err svc "kith: grant create: bad_args: node alice@$(hostname | tr -c 'A-Za-z0-9_.\n-' -) has no service \"kvz\" (it has: demo, echo, kvs)"
# grant list is a table
run "grant list table" 0 grant list "${A[@]}"
printf '%s\n' "$out" | grep -q '^LABEL  *ALLOW  *RATE  *EXPIRES  *STATE' || fail "grant list: $out"
printf '%s\n' "$out" | grep -q '^s4  *kvs  *10/s,burst=20  *never  *active' || fail "grant list row: $out"
run "revoke" 0 grant revoke s6 "${A[@]}"
run "grant list revoked" 0 grant list "${A[@]}"
printf '%s\n' "$out" | grep -q '^s6  *kvs .* revoked ' || fail "revoked row: $out"
# What a new user types wrong: each message says what to do.
run "revoke again" 0 grant revoke s6 "${A[@]}" &&
  [ "$out" = "'s6' was already revoked on node alice@$(hostname | tr -c 'A-Za-z0-9_.\n-' -); nothing changed" ] || fail "revoke again: $out"
run "rate of a revoked grant" 1 grant rate s6 5/s "${A[@]}" &&
  expect_err "revoked rate" "kith: grant rate on node alice@$(hostname | tr -c 'A-Za-z0-9_.\n-' -): bad_args: the grant \"s6\" is revoked: it can never be used again, so its rate cannot change; issue a new grant under another label"
run "revoke unknown" 1 grant revoke nobody "${A[@]}" &&
  printf '%s' "$err" | grep -q 'no grant labelled "nobody" on this node (the grant table lists the labels: kith grant list' || fail "unknown: $err"
run "duplicate label" 1 grant create s6 --services kvs --out "$T/dup.grant" "${A[@]}" &&
  printf '%s' "$err" | grep -q 'a grant labelled "s6" exists (revoked and expired grants keep their labels): choose another label' || fail "dup: $err"
run "create without label" 2 grant create --services kvs --out "$T/x.grant" "${A[@]}" &&
  expect_err "no label" "kith: grant create takes one LABEL, the name you give this grant (kith grant create bob --services kvs --out bob.grant); got none (see kith grant --help)"
run "create, a stray word" 2 grant create bob kvs --out "$T/x.grant" "${A[@]}" &&
  expect_err "stray" "kith: grant create takes one LABEL, the name you give this grant (kith grant create bob --services kvs --out bob.grant); got 'bob' 'kvs' (see kith grant --help)"
run "rate without a rate" 2 grant rate s4 "${A[@]}" &&
  expect_err "rate args" "kith: grant rate takes a LABEL and a rate (kith grant rate bob 20/s); got 's4' (see kith grant --help)"
run "bad label" 2 grant create "b b" --services kvs --out "$T/x.grant" "${A[@]}" &&
  expect_err "label" "kith: grant create: bad label 'b b': use 1-64 of A-Z a-z 0-9 . _ - (e.g. bob)"
run "admin service" 1 grant create s8 --services grants --out "$T/x.grant" "${A[@]}" &&
  printf '%s' "$err" | grep -q '"grants" is an admin service: it can never be granted' || fail "admin: $err"
run "no --out" 2 grant create s8 --services kvs "${A[@]}" &&
  expect_err "no out" "kith: grant create: --out FILE is required: where to write the grant file for your friend (--out - prints it)"
[ -e "$T/x.grant" ] && fail "a grant file was written for a refused create"

# the cookie trap: a client without --cookie and without a cookie file
# creates none, and says which cookie it used and how to set one
mkdir -p "$T/newbie"
out=$(KITH_HOME=$T/newbie "$KITH" nodes "${NET[@]}" 2> "$T/err"); rc=$?
[ $rc -eq 0 ] || fail "nodes without cookie: exit $rc"
[ -e "$T/newbie/cookie" ] && fail "kith nodes created a cookie file"
[ "$(cat "$T/err")" = "kith: nodes: 1 node(s) listed as stranger use another cookie; you gave no cookie: no --cookie and no cookie file $T/newbie/cookie; give your class's cookie with --cookie C, or once: echo C > $T/newbie/cookie && chmod 600 $T/newbie/cookie" ] ||
  fail "nodes cookie hint: $(cat "$T/err")"
printf '%s' "$out" | grep -q '^alice@.* stranger ' || fail "nodes without cookie: $out"
rc=0; err=$(KITH_HOME=$T/newbie "$KITH" call alice kvs keys "${NET[@]}" 2>&1) || rc=$?
[ $rc -eq 1 ] && printf '%s' "$err" | grep -q "^kith: cannot reach alice@[^:]*: unauthorized: it is not in your cluster (its cookie is another one: cluster id [0-9a-f]\{8\}) and it has no public service; you gave no cookie" ||
  fail "call with no cookie: rc=$rc $err"

# a send to a pid that is not alive: exit 1, nothing sent
run "spawn" 0 spawn alice echo server "${A[@]}" "${NET[@]}"
dead=$(printf '%s' "$out" | sed 's/.*"\(<[^"]*>\)".*/\1/' | sed 's/\.\([0-9]*\)>$/.99999>/')
run "send to a dead pid" 1 send "$dead" 1 "${A[@]}" "${NET[@]}" &&
  printf '%s' "$err" | grep -q "^kith: send to $dead: no_proc: no such process on alice@" || fail "dead pid: $err"
# --timeout extends the lookup of an unknown name
start=$SECONDS
run "unknown, longer lookup" 1 call nobody kvs keys --timeout 3 "${A[@]}" "${NET[@]}"
[ $((SECONDS - start)) -ge 3 ] || fail "--timeout 3 looked for $((SECONDS - start)) s"
printf '%s' "$err" | grep -q "^kith: unknown node nobody: no node of that name answered; seen: alice@" || fail "unknown: $err"
# an unknown interface lists the interfaces there are
run "unknown interface" 1 nodes --interface nosuch0 "${A[@]}"
printf '%s' "$err" | grep -q 'unknown interface "nosuch0" (this machine has: lo' || fail "interface: $err"

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; cat "$T/alice.out"; exit 1; fi
echo "cli files ok"
