"""Shared fixtures for the kith Python tests: nodes with their own key
directories, and C++ node processes (kith_test_node)."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import kith

COOKIE = "py-test-cookie"


@pytest.fixture
def make_node(tmp_path):
    """make_node(name, **opts) -> a networked Node on loopback with its own key dir; stopped at the end."""
    made = []

    def make(name, **opts):
        opts.setdefault("listen", "tcp://127.0.0.1:0")
        opts.setdefault("cookie", COOKIE)
        opts.setdefault("key_dir", tmp_path / name.split("@")[0])
        opts.setdefault("workers", 2)
        n = kith.Node(name, **opts)
        made.append(n)
        return n

    yield make
    for n in made:
        n.stop()


class CppNode:
    """A kith_test_node process: hosts kvs, echo (+ actor type server), demo, slow, test."""

    def __init__(self, key_dir, name="cpp@localhost", cookie=COOKIE):
        self.name = name
        self.proc = subprocess.Popen(
            [os.environ["KITH_TEST_NODE"], "--name", name, "--key-dir", str(key_dir), "--cookie", cookie],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = {}

        def read():
            line = self.proc.stdout.readline()
            ready["line"] = line
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(30)
        line = ready.get("line", "")
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"kith_test_node did not start: {line!r} {self.proc.stderr.read()!r}")
        _, self.endpoint, self.key = line.split()

    def freeze(self):
        """SIGSTOP, returning once every thread has stopped: kill() wakes one
        thread to start the group stop, and on a busy machine the others (the
        I/O thread among them) can go on answering for milliseconds."""
        self.proc.send_signal(signal.SIGSTOP)
        tasks = f"/proc/{self.proc.pid}/task"
        deadline = time.monotonic() + 10
        while True:
            states = []
            for tid in os.listdir(tasks):
                try:
                    with open(f"{tasks}/{tid}/stat") as f:
                        states.append(f.read().rpartition(")")[2].split()[0])
                except FileNotFoundError:
                    pass  # the thread has just exited
            if all(s in ("T", "t", "Z", "X") for s in states):  # stopped, traced, or ended
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"kith_test_node {self.proc.pid}: thread states {states} 10 s after SIGSTOP")
            time.sleep(0.001)

    def stop(self, sig=None):
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def cpp_node(tmp_path):
    n = CppNode(tmp_path / "cpp")
    yield n
    n.stop()


def wait_until(pred, timeout=20.0, what="condition"):
    """Polls pred() until true (a bounded wait for an asynchronous effect)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def run_python(code_or_file, *args, timeout=60, env=None, **kw):
    """Runs a Python child process with the same PYTHONPATH."""
    cmd = [sys.executable] + ([code_or_file] if os.path.exists(str(code_or_file)) else ["-c", code_or_file])
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=e, **kw)


def free_port(kind="udp"):
    """A port of 127.0.0.1 free at the time of asking (beacon ports of a test,
    so that tests running in parallel do not hear each other; or a TCP port
    where nothing listens)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def loopback_discovery(port, **extra):
    """Discovery options that keep beacons on loopback (never the LAN)."""
    opts = {"beacon_port": port, "broadcast_address": "127.255.255.255", "interval": 0.2}
    opts.update(extra)
    return opts
