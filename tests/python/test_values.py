"""Values crossing between Python and kith: every type both ways, range
checks, and what cannot cross (functions in particular)."""
import pytest

import kith
from kith import _kith


@pytest.mark.parametrize("value", [
    None, True, False, 0, -1, 2**63 - 1, -2**63, 2**64 - 1, 1.5, -0.0, "", "héllo", b"", b"\x00\xff",
    [], [1, "a", None], {"k": 1, "j": [1, 2]}, {1: "int key"}, [[[]]],
])
def test_roundtrip(value):
    assert _kith._to_term_roundtrip(value) == value


def test_tuple_becomes_list_and_bytearray_bytes():
    assert _kith._to_term_roundtrip((1, (2, 3))) == [1, [2, 3]]
    assert _kith._to_term_roundtrip(bytearray(b"ab")) == b"ab"


def test_bool_stays_bool():
    out = _kith._to_term_roundtrip([True, 1])
    assert out[0] is True and type(out[1]) is int


def test_int_out_of_range_is_overflow_error():
    with pytest.raises(OverflowError, match="out of range"):
        _kith._to_term_roundtrip(2**64)
    with pytest.raises(OverflowError):
        _kith._to_term_roundtrip([-2**63 - 1])


def test_functions_cannot_be_sent():
    with pytest.raises(TypeError, match="functions cannot be sent"):
        _kith._to_term_roundtrip(lambda: 1)
    with pytest.raises(TypeError, match="functions cannot be sent"):
        _kith._to_term_roundtrip({"f": print})


def test_other_objects_are_refused():
    with pytest.raises(TypeError, match="cannot send a value of type"):
        _kith._to_term_roundtrip({1, 2})
    with pytest.raises(TypeError, match="cannot send a value of type object"):
        _kith._to_term_roundtrip(object())


def test_too_deep_is_refused():
    v = []
    for _ in range(100):
        v = [v]
    with pytest.raises(ValueError, match="nested too deeply"):
        _kith._to_term_roundtrip(v)


def test_unhashable_keys_from_the_wire():
    # A map key that is an array (possible from C++) arrives as a tuple.
    # msgpack: fixmap(1) { fixarray(2)[1, 2] : "x" }
    assert _kith._decode(b"\x81\x92\x01\x02\xa1x") == {(1, 2): "x"}


def test_pid_and_ref_types():
    p = kith.Pid("gandalf@pi1", 42)
    assert repr(p) == "<gandalf@pi1.42>"
    assert kith.Pid.parse("<gandalf@pi1.42>") == p
    assert kith.Pid.parse("nonsense") is None
    assert hash(p) == hash(kith.Pid("gandalf@pi1", 42))
    assert len({p, kith.Pid("gandalf@pi1", 42), kith.Pid("gandalf@pi1", 43)}) == 2
    assert kith.Pid("gandalf@pi1", 41) < p
    r = kith.Ref("gandalf@pi1", 7)
    assert repr(r) == "#Ref<gandalf@pi1.7>"
    assert r != kith.Ref("gandalf@pi1", 8)
    assert _kith._to_term_roundtrip([p, {"r": r}]) == [p, {"r": r}]


def test_decode_error_class():
    with pytest.raises(kith.DecodeError) as e:
        _kith._decode(b"\xc1")
    assert e.value.code == "decode"


def test_send_refuses_a_function(make_node):
    n = make_node("values@localhost")
    with pytest.raises(TypeError, match="functions cannot be sent"):
        n.send(n.self, print)
    with pytest.raises(TypeError, match="functions cannot be sent"):
        n.call(n.name, "x", "y", lambda: 0)
    # nothing was sent
    with pytest.raises(kith.Timeout):
        n.receive(timeout=0.05)
