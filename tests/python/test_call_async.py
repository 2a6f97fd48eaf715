"""Node.call_async: a Future per call, many in flight from one thread; the
value, or the exception call() raises (same classes); done-callbacks that
call again (asynchronously and blocking) and that wait for another call's
Future; several Python threads at once (GIL); a node that stops while calls
are outstanding; arguments refused at once."""
import asyncio
import concurrent.futures
import threading

import pytest

import kith
from conftest import CppNode


@pytest.fixture
def pair(make_node):
    a = make_node("a@localhost", services=["echo", "kvs"], discovery=False)
    b = make_node("b@localhost", discovery=False)
    assert b.connect(a.endpoint, a.key) == a.name
    return a, b


def test_many_calls_in_flight_from_one_thread(pair):
    a, b = pair
    futs = [b.call_async(a.name, "echo", "echo", [i, "x" * i]) for i in range(256)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futs)
    assert [f.result(20) for f in futs] == [[i, "x" * i] for i in range(256)]
    # The short name works as for call(); values of every kind come back.
    assert b.call_async("a", "echo", "echo", {"k": [1.5, None, True, b"\x00"]}).result(10) == \
        {"k": [1.5, None, True, b"\x00"]}
    assert b.call_async(a.name, "kvs", "store", "k", 7).result(10) is True
    assert b.call_async(a.name, "kvs", "lookup", "k").result(10) == ["ok", 7]
    assert not b._pending


def test_errors_are_the_classes_call_raises(pair, make_node):
    a, b = pair
    svc = a.service("py")

    @svc.function
    def boom():
        raise ValueError("no luck")

    @svc.function
    def picky(x):
        raise kith.BadArgs(f"not {x}")
    cases = [
        ((a.name, "nope", "f"), kith.NoSuchService),
        ((a.name, "echo", "nope"), kith.NoSuchFunction),
        (("zzz@localhost", "echo", "echo", 1), kith.NodeDown),
        ((a.name, "py", "boom"), kith.RemoteException),
        ((a.name, "py", "picky", 3), kith.BadArgs),
    ]
    for args, exc in cases:
        with pytest.raises(exc) as sync:
            b.call(*args)
        f = b.call_async(*args)
        with pytest.raises(exc) as e:
            f.result(10)
        # Exactly what call() raised: class, code, detail and message.
        assert type(e.value) is type(sync.value), args
        assert (e.value.code, e.value.detail, str(e.value)) == (sync.value.code, sync.value.detail, str(sync.value))
    # On its own node too (answered on a kith thread, never in the caller).
    assert a.call_async(a.name, "echo", "echo", 5).result(10) == 5
    with pytest.raises(kith.RemoteException, match="no luck"):
        a.call_async(a.name, "py", "boom").result(10)
    # Refused at once: arguments that cannot be sent, a name that is no str.
    with pytest.raises(TypeError):
        b.call_async(a.name, "echo", "echo", lambda: 1)
    with pytest.raises(TypeError, match="function is a str, got 5"):
        b.call_async(a.name, "echo", 5)
    assert not b._pending


def test_done_callbacks_call_again(pair):
    a, b = pair
    # A chain: each callback issues the next call, 200 deep, from kith threads.
    done, got = threading.Event(), []

    def step(f):
        got.append(f.result())
        if len(got) < 200:
            b.call_async(a.name, "echo", "echo", len(got)).add_done_callback(step)
        else:
            done.set()
    b.call_async(a.name, "echo", "echo", 0).add_done_callback(step)
    assert done.wait(30) and got == list(range(200))
    # A callback may make a blocking call, and wait for another Future.
    out, fin = {}, threading.Event()

    def blocking(f):
        try:
            out["sync"] = b.call(a.name, "echo", "echo", f.result() + 1)
            out["other"] = b.call_async(a.name, "echo", "echo", "other").result(10)
        except BaseException as e:  # noqa: BLE001 (reported by the assertion below)
            out["error"] = e
        fin.set()
    b.call_async(a.name, "echo", "echo", 1).add_done_callback(blocking)
    assert fin.wait(30) and out == {"sync": 2, "other": "other"}, out
    assert not b.call_async(a.name, "echo", "echo", 1).cancel()  # a call cannot be taken back


def test_callbacks_wait_for_each_other(pair):
    # 64 calls; each one's callback waits for the next one's Future (the
    # last for the first). Answers arrive in batches: the next one is either
    # in the same batch (completed before any callback of it runs) or in a
    # later one (completed by the next dispatcher meanwhile). None waits
    # for itself: every callback gets its value.
    a, b = pair
    futs = []
    got, lock, fin, issued = {}, threading.Lock(), threading.Event(), threading.Event()

    def cb(i):
        def run(f):
            try:
                assert issued.wait(20)
                v = (f.result(), futs[(i + 1) % 64].result(20))
            except BaseException as e:  # noqa: BLE001 (reported by the assertion below)
                v = e
            with lock:
                got[i] = v
                if len(got) == 64:
                    fin.set()
        return run
    for i in range(64):  # most callbacks are added before the answer: they run on dispatchers
        futs.append(b.call_async(a.name, "echo", "echo", i))
        futs[-1].add_done_callback(cb(i))
    issued.set()
    assert fin.wait(60), sorted(got)
    assert got == {i: (i, (i + 1) % 64) for i in range(64)}, got


def test_threads_and_asyncio(pair):
    # 8 Python threads, each with 32 calls in flight and callbacks running on
    # kith threads meanwhile: the GIL is taken and given back correctly.
    a, b = pair
    counted, lock = [0], threading.Lock()

    def cb(_):
        with lock:
            counted[0] += 1

    def worker(k):
        for r in range(10):
            futs = [b.call_async(a.name, "echo", "echo", [k, r, i]) for i in range(32)]
            for f in futs:
                f.add_done_callback(cb)
            assert [f.result(30) for f in futs] == [[k, r, i] for i in range(32)]
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    errors = []

    def run(t):
        try:
            t()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=run, args=(lambda k=k: worker(k),)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert counted[0] == 8 * 10 * 32

    async def many():
        return await asyncio.gather(*(asyncio.wrap_future(b.call_async(a.name, "echo", "echo", i))
                                      for i in range(16)))
    assert asyncio.run(many()) == list(range(16))


def test_timeout_and_a_node_that_stops_with_calls_outstanding(make_node, tmp_path):
    # kith_test_node's slow:wait never answers (it parks the reply): the
    # Future times out; and when the calling node stops, every Future still
    # outstanding fails (Shutdown, or NodeDown "shutdown"), none is left
    # hanging, and call_async on the stopped node raises Shutdown at once.
    cpp = CppNode(tmp_path / "cpp")
    try:
        n = make_node("n@localhost", discovery=False)
        assert n.connect(cpp.endpoint, cpp.key) == cpp.name
        with pytest.raises(kith.Timeout):
            n.call_async(cpp.name, "slow", "wait", timeout=0.3).result(10)
        called = []
        outstanding = [n.call_async(cpp.name, "slow", "wait", timeout=60) for _ in range(50)]
        for f in outstanding:
            f.add_done_callback(lambda f: called.append(f.exception()))
        n.stop()
        for f in outstanding:
            with pytest.raises((kith.NodeDown, kith.Shutdown)) as e:
                f.result(10)
            assert "shutdown" in str(e.value) or "stopped" in e.value.detail, e.value
        assert len(called) == 50 and all(isinstance(x, kith.Error) for x in called)
        assert not n._pending
        with pytest.raises(kith.Shutdown):
            n.call_async(cpp.name, "echo", "echo", 1)
    finally:
        cpp.stop()


def test_a_callback_that_raises_systemexit_leaves_the_others_to_run(pair):
    # The dispatcher completes a batch of answers, then runs their
    # done-callbacks. One callback raising a BaseException (SystemExit here;
    # concurrent.futures catches only Exception) must not leave the other
    # Futures' callbacks of its batch unrun (an asyncio.wrap_future awaiting
    # one of them would wait forever), nor the next answers unanswered.
    a, b = pair
    main = threading.current_thread()
    ran = []
    all_ran = threading.Event()
    n = 64

    def record(f):
        ran.append(f.result())
        if len(ran) == n:
            all_ran.set()

    def leave(f):
        if threading.current_thread() is not main:
            raise SystemExit("a callback that exits")

    futs = []
    for i in range(n):
        f = b.call_async(a.name, "echo", "echo", i)
        f.add_done_callback(record)  # first: every Future's own record runs
        f.add_done_callback(leave)
        futs.append(f)
    assert sorted(f.result(20) for f in futs) == list(range(n))
    assert all_ran.wait(20), f"{len(ran)} of {n} done-callbacks ran"
    assert b.call_async(a.name, "echo", "echo", "after").result(10) == "after"
