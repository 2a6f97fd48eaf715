"""A grant holder in its own process (Bob, for tests/python/test_grants.py).

Usage: grant_holder.py KEY_DIR. Starts a node of its own cluster (its own
cookie: it has no right on the granting node except through the grant), then
reads one JSON request per line on stdin and answers one JSON line each:

    ["connect", GRANT_PATH]             -> {"ok": node name} | {"error": code, "detail": ...}
    ["call", NODE, SVC, FN, [ARGS...]]  -> {"ok": value} | {"error": code, "detail": ...}
"""
import json
import sys

import kith


def main() -> None:
    with kith.Node("bob@localhost", listen="tcp://127.0.0.1:0", cookie="bobs-own-cluster", key_dir=sys.argv[1],
                   discovery=False) as node:
        print(json.dumps({"ready": node.name}), flush=True)
        for line in sys.stdin:
            op, *args = json.loads(line)
            try:
                if op == "connect":
                    out = {"ok": node.connect(kith.load_grant(args[0]))}
                elif op == "call":
                    out = {"ok": node.call(args[0], args[1], args[2], *args[3], timeout=10)}
                else:
                    out = {"error": "badarg", "detail": f"unknown op {op}"}
            except kith.Error as e:
                out = {"error": e.code, "detail": e.detail}
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
