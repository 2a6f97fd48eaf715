"""The Python walkthroughs in examples/python, each run as a program."""
import os

import pytest

from conftest import run_python

EXAMPLES = os.environ.get("KITH_EXAMPLES_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))

EXPECTED = {
    "echo.py": ["sent back 'hello'", "answered ['a', 1, b'\\x00']"],
    "kvs.py": ["connected to gandalf@localhost", "store -> True", "lookup -> ['ok', 'fine']",
               "lookup missing -> undefined", "bad call -> bad_args: expected 2 arguments, got 1"],
    "dist_demo.py": ["erlang:node() -> gandalf@localhost", "math:add(2, 3) -> 5",
                     "os:cmd refused -> no_such_function: os:cmd"],
    "alice_bob.py": ["alice: granted kvs to bob at 10/s", "bob: connected to alice@localhost with the grant 'bob'",
                     "bob: store -> True", "bob: lookup -> ['ok', 'fine']", "bob: echo -> unauthorized",
                     "alice: revoked bob's grant", "bob: lookup -> revoked",
                     "alice: bob's grant: revoked=True accepted=2 refused="],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(name, tmp_path):
    r = run_python(os.path.join(EXAMPLES, name), env={"KITH_HOME": str(tmp_path / "home")}, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    for line in EXPECTED[name]:
        assert line in r.stdout, r.stdout
