"""The seeds' echo server, in Python: an actor that answers {Client, Msg} by
sending Msg back to Client, and a plain thread that talks to it.

    python3 examples/python/echo.py
"""
import kith


def echo(actor, msg):
    """Answers [Client, M] with M; a request is answered with its body."""
    if isinstance(msg, kith.Request):
        actor.reply(msg, msg.body)
    elif isinstance(msg, list) and len(msg) == 2 and isinstance(msg[0], kith.Pid):
        client, m = msg
        actor.send(client, m)


def main():
    with kith.Node("gandalf@localhost") as node:
        server = node.spawn(echo)
        node.send(server, [node.self, "hello"])           # Pid ! {self(), hello}
        print(server, "sent back", repr(node.receive(timeout=5)))
        print(server, "answered", repr(node.call_pid(server, ["a", 1, b"\x00"], timeout=5)))


if __name__ == "__main__":
    main()
