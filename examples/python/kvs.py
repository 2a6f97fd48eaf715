"""The seeds' kvs walkthrough, in Python, with two nodes in one program:
gandalf exports the name server kvs (store / lookup) written in Python;
bilbo calls it over the network, as Erlang's

    rpc:call(gandalf@localhost, kvs, store, [weather, fine]).  -> true
    rpc:call(gandalf@localhost, kvs, lookup, [weather]).       -> {ok, fine}

Keys and the node identity live in $KITH_HOME (or ~/.kith).

    python3 examples/python/kvs.py
"""
import threading

import kith

COOKIE = "classroom-42"


def kvs_service():
    svc = kith.Service("kvs")
    table = {}
    lock = threading.Lock()            # functions may run concurrently

    @svc.function
    def store(key: str, value) -> bool:
        with lock:
            table[key] = value
        return True

    @svc.function
    def lookup(key: str):
        with lock:
            return ["ok", table[key]] if key in table else "undefined"

    return svc


def main():
    with kith.Node("gandalf@localhost", listen="tcp://127.0.0.1:0", cookie=COOKIE) as gandalf, \
         kith.Node("bilbo@localhost", listen="tcp://127.0.0.1:0", cookie=COOKIE) as bilbo:
        gandalf.add_service(kvs_service())
        print("connected to", bilbo.connect(gandalf.endpoint, gandalf.key))
        print("store ->", bilbo.call("gandalf@localhost", "kvs", "store", "weather", "fine"))
        found = bilbo.call("gandalf@localhost", "kvs", "lookup", "weather")
        print("lookup ->", found)
        print("lookup missing ->", bilbo.call("gandalf@localhost", "kvs", "lookup", "rain"))
        try:
            bilbo.call("gandalf@localhost", "kvs", "store", "only-a-key")
        except kith.BadArgs as e:
            print("bad call ->", e)
        assert found == ["ok", "fine"]


if __name__ == "__main__":
    main()
