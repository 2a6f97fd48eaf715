"""Process-level behaviour: Ctrl-C interrupts blocking calls; interpreter exit
and stop() with busy Python actors neither hang nor crash."""
import signal
import subprocess
import sys
import time

from conftest import COOKIE, free_port, run_python

BLOCKED = r"""
import sys, kith
disc = {"beacon_port": int(sys.argv[3]), "broadcast_address": "127.255.255.255"} if sys.argv[2] == "find" else False
n = kith.Node("ctrlc@localhost", listen="tcp://127.0.0.1:0", cookie=COOKIE, key_dir=sys.argv[1], discovery=disc)
if sys.argv[2] == "call":
    n.connect(sys.argv[3], sys.argv[4])
try:
    print("waiting", flush=True)
    if sys.argv[2] == "receive":
        n.receive()
    elif sys.argv[2] == "find":
        n.find("nobody", timeout=600)
    elif sys.argv[2] == "connect":  # nothing listens there: connect waits
        n.connect("tcp://127.0.0.1:" + sys.argv[3], n.key, timeout=600)
    elif sys.argv[2] == "call_pid":
        n.call_pid(n.spawn(lambda actor, msg: None), "never answered", timeout=600)
    else:
        n.call("cpp@localhost", "slow", "wait", timeout=600)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
"""


def check_interrupt(tmp_path, what, *extra):
    code = BLOCKED.replace("COOKIE", repr(COOKIE))
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / what), what, *extra], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "waiting"
        # Give it time to enter the blocking call, so that the test shows the
        # call is interrupted (a signal arriving earlier still passes: it is
        # not a synchronisation bound).
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 3
        assert p.stdout.read().strip() == "interrupted"
    finally:
        p.kill()


def test_ctrl_c_interrupts_receive(tmp_path):
    check_interrupt(tmp_path, "receive")


def test_ctrl_c_interrupts_call_pid(tmp_path):
    check_interrupt(tmp_path, "call_pid")


def test_ctrl_c_interrupts_call(tmp_path, cpp_node):
    check_interrupt(tmp_path, "call", cpp_node.endpoint, cpp_node.key)


def test_ctrl_c_interrupts_find(tmp_path):
    check_interrupt(tmp_path, "find", str(free_port("udp")))


def test_ctrl_c_interrupts_connect(tmp_path):
    check_interrupt(tmp_path, "connect", str(free_port("tcp")))


BUSY = r"""
import sys, threading, kith
mode = sys.argv[1]
n = kith.Node("busy@localhost", listen="tcp://127.0.0.1:0", cookie="c", key_dir=sys.argv[2], workers=2)
svc = n.service("s")
@svc.function
def f(x): return x
def ping(actor, msg):
    actor.send(msg[0], [actor.self, msg[1] + 1])
a = n.spawn(ping); b = n.spawn(ping)
n.send(a, [b, 0])                    # two actors bouncing forever
def caller():
    try:
        while True: n.call(n.name, "s", "f", 1)
    except kith.Error: pass
threading.Thread(target=caller, daemon=True).start()
for _ in range(100): n.call(n.name, "s", "f", 2)
if mode == "stop":
    n.stop()
print("end", flush=True)
"""


def test_exit_without_stop_does_not_hang(tmp_path):
    r = run_python(BUSY, "exit", str(tmp_path / "k1"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "end"


def test_stop_with_busy_actors(tmp_path):
    r = run_python(BUSY, "stop", str(tmp_path / "k2"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "end"
