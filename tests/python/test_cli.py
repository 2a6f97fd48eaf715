"""The `kith` command line (bindings/cli) calling a Python node's services:
found by discovery on loopback (its own beacon port, 127.255.255.255), named
with --peer, or reached with a grant file."""
import os
import subprocess

import pytest

from conftest import COOKIE, free_port, loopback_discovery

CLI = os.environ.get("KITH_CLI", "")
pytestmark = pytest.mark.skipif(not os.path.exists(CLI), reason="the kith command line is not built")


def kith_cli(tmp_path, *args, timeout=60):
    env = dict(os.environ, KITH_HOME=str(tmp_path / "cli-home"))
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def pynode(make_node):
    port = free_port()
    n = make_node("pyserver@localhost", services=["kvs"], discovery=loopback_discovery(port))
    math = n.service("math")

    @math.function
    def add(a: int, b: int) -> int:
        return a + b

    @math.function
    def fail() -> None:
        raise ValueError("no luck")

    n.beacon_port = port
    return n


def test_cli_calls_a_python_service_found_by_discovery(pynode, tmp_path):
    beacons = ["--cookie", COOKIE, "--broadcast", "127.255.255.255", "--beacon-port", str(pynode.beacon_port)]
    r = kith_cli(tmp_path, "call", *beacons, "pyserver", "math", "add", "2", "3")
    assert (r.returncode, r.stdout.strip()) == (0, "5"), r.stderr
    r = kith_cli(tmp_path, "call", *beacons, "pyserver@localhost", "math", "add", '"x"', "3")
    assert r.returncode == 1 and "bad_args" in r.stderr, r
    r = kith_cli(tmp_path, "call", *beacons, "pyserver", "math", "fail")
    assert r.returncode == 1 and "exception" in r.stderr and "no luck" in r.stderr, r


def test_cli_with_peer(pynode, tmp_path):
    port = pynode.endpoint.rsplit(":", 1)[1]
    # The query also goes by unicast to the peer's beacon port (broadcast
    # stays on loopback: the test must not query the LAN).
    r = kith_cli(tmp_path, "call", "--cookie", COOKIE, "--broadcast", "127.255.255.255", "--beacon-port",
                 str(pynode.beacon_port), "--peer", f"127.0.0.1:{port}", "pyserver", "kvs", "store", '"k"', "[1, 2]")
    assert (r.returncode, r.stdout.strip()) == (0, "true"), r.stderr
    assert pynode.call(pynode.name, "kvs", "lookup", "k") == ["ok", [1, 2]]


def test_cli_with_a_grant_from_python(pynode, tmp_path):
    pynode.grant("cli", "math:add", rate="unlimited").save(tmp_path / "cli.grant")
    grant = ["--grant", str(tmp_path / "cli.grant")]
    r = kith_cli(tmp_path, "call", *grant, "pyserver", "math", "add", "40", "2")
    assert (r.returncode, r.stdout.strip()) == (0, "42"), r.stderr
    r = kith_cli(tmp_path, "call", *grant, "pyserver", "kvs", "lookup", '"k"')
    assert r.returncode == 1 and "unauthorized" in r.stderr, r
    pynode.revoke_grant("cli")
    r = kith_cli(tmp_path, "call", *grant, "pyserver", "math", "add", "1", "1")
    assert r.returncode == 1 and "revoked" in r.stderr, r
    (row,) = pynode.grants()
    assert row["revoked"] and row["accepted"] >= 1 and row["refused"] >= 1
