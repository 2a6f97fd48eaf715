"""Alice and Bob, as Erlang WTD tells it.

  "Alice creates a public/private keypair and associates it with a list of
   things that can be done. She then gives this keypair to Bob ... It is not
   reciprocal."  With kith: Alice's node issues a *grant* for her kvs
service; Bob's node (another cluster, another process) connects with it and
may use kvs, and nothing else: his call to Alice's echo is refused. Alice
can limit how often he calls (the rate) and revoke the grant whenever she
likes; Bob's next call is then refused as revoked.

Run it:  python3 alice_bob.py
(Alice starts Bob as a second process: `python3 alice_bob.py bob FILE`.)
"""
import os
import subprocess
import sys
import tempfile

import kith


def alice() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with kith.Node("alice@localhost", listen="tcp://127.0.0.1:0", cookie="alices-cluster",
                       key_dir=os.path.join(tmp, "alice"), services=["kvs", "echo"]) as node:
            # Bob may use kvs, at most 10 calls per second; nothing else.
            grant = node.grant("bob", "kvs", rate="10/s")
            path = os.path.join(tmp, "bob.grant")
            grant.save(path)  # mode 0600: it holds the grant's secret key
            print(f"alice: granted {grant.scope} to bob at {grant.rate}", flush=True)

            bob = subprocess.Popen([sys.executable, os.path.abspath(__file__), "bob", path],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for line in bob.stdout:  # Bob's story until he waits for Alice
                print(line, end="", flush=True)
                if line.startswith("bob: waiting"):
                    break

            node.revoke_grant("bob")
            print("alice: revoked bob's grant", flush=True)
            out, _ = bob.communicate("go\n", timeout=60)
            print(out, end="")
            (row,) = node.grants()
            print(f"alice: bob's grant: revoked={row['revoked']} accepted={row['accepted']} "
                  f"refused={row['refused']}")
            sys.exit(bob.returncode)


def bob(grant_path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Bob's own node, in his own cluster: Alice gets no right on it.
        with kith.Node("bob@localhost", listen="tcp://127.0.0.1:0", cookie="bobs-cluster",
                       key_dir=tmp) as node:
            grant = kith.load_grant(grant_path)
            alice_name = node.connect(grant)
            print(f"bob: connected to {alice_name} with the grant '{grant.label}'")
            print("bob: store ->", node.call(alice_name, "kvs", "store", "weather", "fine"))
            print("bob: lookup ->", node.call(alice_name, "kvs", "lookup", "weather"))
            try:
                node.call(alice_name, "echo", "echo", "hello")
            except kith.Unauthorized as e:
                print(f"bob: echo -> unauthorized ({e.detail})")
            print("bob: waiting for alice", flush=True)
            sys.stdin.readline()
            try:
                node.call(alice_name, "kvs", "lookup", "weather")
                print("bob: lookup after the revocation worked?!")
                sys.exit(1)
            except kith.Revoked as e:
                print(f"bob: lookup -> revoked ({e.detail})")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "bob":
        bob(sys.argv[2])
    else:
        alice()
