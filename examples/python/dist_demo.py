"""The seeds' dist_demo, in Python: bilbo spawns an rpc server on gandalf and
asks it to run a function there, as Erlang's

    Pid = dist_demo:start('gandalf@localhost').
    dist_demo:rpc(Pid, erlang, node, []).       -> 'gandalf@localhost'

Unlike Erlang, gandalf runs only what it exported: the actor type
"rpc_server" of its service "dist_demo", which answers requests
[Module, Function, Args] from a fixed table (never arbitrary code).

    python3 examples/python/dist_demo.py
"""
import kith

COOKIE = "classroom-42"

# What the rpc server may run: (module, function) -> f(actor, *args).
ALLOWED = {
    ("erlang", "node"): lambda actor: actor.node,
    ("math", "add"): lambda actor, a, b: a + b,
}


def make_service():
    svc = kith.Service("dist_demo")

    @svc.actor
    class rpc_server:
        def receive(self, actor, msg):
            if not isinstance(msg, kith.Request):
                return
            mod, fn, args = msg.body
            f = ALLOWED.get((mod, fn))
            if f is None:
                actor.reply_error(msg, "no_such_function", f"{mod}:{fn}")
            else:
                actor.reply(msg, f(actor, *args))

    return svc


def rpc(node, pid, mod, fn, args):
    return node.call_pid(pid, [mod, fn, args], timeout=5)


def main():
    with kith.Node("gandalf@localhost", listen="tcp://127.0.0.1:0", cookie=COOKIE) as gandalf, \
         kith.Node("bilbo@localhost", listen="tcp://127.0.0.1:0", cookie=COOKIE) as bilbo:
        gandalf.add_service(make_service())
        bilbo.connect(gandalf.endpoint, gandalf.key)
        pid = bilbo.spawn("gandalf@localhost", "dist_demo", "rpc_server")   # dist_demo:start(Node)
        print("started", pid)
        where = rpc(bilbo, pid, "erlang", "node", [])
        print("erlang:node() ->", where)
        print("math:add(2, 3) ->", rpc(bilbo, pid, "math", "add", [2, 3]))
        try:
            rpc(bilbo, pid, "os", "cmd", ["rm -rf /"])
        except kith.NoSuchFunction as e:
            print("os:cmd refused ->", e)
        assert where == "gandalf@localhost" and pid.node == "gandalf@localhost"


if __name__ == "__main__":
    main()
