"""Endpoints as people type them, as in the kith command line (docs/cli.md,
"Endpoints"): listen=, advertise=, member_listen=, connect(endpoint, key),
discovery peers and serve_relay take "HOST:PORT" as "tcp://HOST:PORT";
anything else raises kith.BadArg naming the keyword and the text, saying
what is wrong, with an example, before anything is started."""
import random

import pytest

import kith


def test_host_port_is_tcp_host_port(make_node):
    a = make_node("epa@localhost", listen="127.0.0.1:0", member_listen="127.0.0.1:0", discovery=False)
    assert a.endpoint.startswith("tcp://127.0.0.1:")
    assert a.member_endpoint.startswith("tcp://127.0.0.1:")
    b = make_node("epb@localhost", listen="127.0.0.1:0", discovery=False)
    # connect(endpoint, key) with the member port as HOST:PORT
    assert b.connect(a.member_endpoint[len("tcp://"):], a.key, timeout=20) == a.name
    c = make_node("epc@localhost", listen="127.0.0.1:0", advertise="192.0.2.7:4370", discovery=False)
    assert c.endpoint == "tcp://192.0.2.7:4370"
    d = make_node("epd@localhost", listen="tcp://127.0.0.1:0",
                  discovery={"peers": ["127.0.0.1", "tcp://127.0.0.1:4370"], "announce": False,
                             "beacon_port": 20000 + random.randrange(20000)})
    assert d.endpoint.startswith("tcp://127.0.0.1:")
    relay = a.serve_relay("tcp://127.0.0.1:0", advertise="127.0.0.1")
    assert relay.endpoint.startswith("127.0.0.1:")


@pytest.mark.parametrize("opts, want", [
    ({"listen": "127.0.0.1"}, "listen '127.0.0.1' has no port"),
    ({"listen": "127.0.0.1:99999"}, "listen '127.0.0.1:99999' has no valid port"),
    ({"listen": "[::1]:0"}, "listen '[::1]:0' is an IPv6 address"),
    ({"listen": "udp://127.0.0.1:1"}, "is not a TCP endpoint"),
    ({"listen": "127.0.0.1:0", "advertise": "192.0.2.7:0"}, "advertise '192.0.2.7:0' has no valid port"),
    ({"listen": "127.0.0.1:0", "member_listen": "nowhere"}, "member_listen 'nowhere' has no port"),
    ({"listen": "127.0.0.1:0", "discovery": {"peers": ["a b"]}}, "peers 'a b' does not start with a host"),
])
def test_what_is_not_an_endpoint_is_refused_saying_why(make_node, tmp_path, opts, want):
    with pytest.raises(kith.BadArg) as e:
        make_node("epbad@localhost", **opts)
    assert want in str(e.value) and "e.g. " in str(e.value)
    assert not (tmp_path / "epbad").exists()  # refused before the key directory was made


def test_connect_and_serve_relay_refuse_what_is_not_an_endpoint(make_node):
    a = make_node("epe@localhost", listen="127.0.0.1:0", discovery=False)
    with pytest.raises(kith.BadArg, match=r"connect endpoint 'localhost' has no port.*e\.g\. "):
        a.connect("localhost", a.key, timeout=1)
    with pytest.raises(kith.BadArg, match=r"serve_relay listen '127\.0\.0\.1' has no port.*e\.g\. "):
        a.serve_relay("127.0.0.1")


@pytest.mark.parametrize("listen, want", [
    ("localhost:0", "neither an IPv4 address nor an interface of this machine: host names are not looked up"),
    ("192.0.2.7:4370", "the address is not this machine's: give one of its own, or 0.0.0.0"),
])
def test_an_endpoint_that_cannot_be_listened_on_says_why(make_node, listen, want):
    with pytest.raises(kith.SetupError, match="cannot bind the public port") as e:
        make_node("epbind@localhost", listen=listen)
    assert want in str(e.value)


def test_a_taken_port_says_so(make_node):
    a = make_node("eptaken@localhost", listen="127.0.0.1:0", discovery=False)
    with pytest.raises(kith.SetupError) as e:
        make_node("eptaken2@localhost", listen=a.endpoint)
    assert "the port is taken, by another node or program: choose another, or port 0 for any free one" in str(e.value)
