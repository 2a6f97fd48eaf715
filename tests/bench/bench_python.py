#!/usr/bin/env python3
"""python_rpc_p50_us: a Python caller of a C++ service on loopback, against
the C++ rpc_p50_us of the same run (target: at most 2x); and
python_rpc_32_callers_calls_per_s: 32 calls outstanding through
Node.call_async from one Python thread (each Future's done-callback issues
the next call), beside the C++ rpc_32_callers_calls_per_s (32 outstanding
through node::call_async) of the same run; and
python_rpc_32_threads_calls_per_s: 32 Python threads each with one blocking
call outstanding.

Same shape as kith_bench's "remote" rpc figure: two nodes in one process on
loopback with real CURVE; node b hosts the C++ built-in echo service, node a
makes 20000 sequential blocking calls echo:echo([i]) (after 2000 warm-up
calls) from Python. The C++ figure is measured first by running
`kith_bench remote` with KITH_BENCH_REMOTE_ONLY=rpc.

    ./dev bench python
    python3 tests/bench/bench_python.py [--build DIR]    (after building kith_python and kith_bench)

Prints "<figure> <value> <unit>" lines like kith_bench.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpp_figure(bench: str, part: str, figure: str) -> float:
    env = dict(os.environ, KITH_BENCH_REMOTE_ONLY=part)
    out = subprocess.run([bench, "remote"], capture_output=True, text=True, env=env, timeout=600).stdout
    print(out, end="")
    m = re.search(r"^" + figure + r" ([0-9.eE+-]+)", out, re.M)
    return float(m.group(1)) if m else -1.0


def python_32_async(total: int) -> float:
    """32 calls outstanding through call_async until `total` are done: each
    done-callback issues the next call (the C++ figure's shape); calls/s."""
    import threading
    import kith
    with tempfile.TemporaryDirectory() as d:
        opts = dict(listen="tcp://127.0.0.1:0", cookie="kith-bench-cookie")
        with kith.Node("a@bench", key_dir=os.path.join(d, "a"), **opts) as a, \
             kith.Node("b@bench", key_dir=os.path.join(d, "b"), services=["echo"], **opts) as b:
            bn = a.connect(b.endpoint, b.key)
            for f in [a.call_async(bn, "echo", "echo", [1]) for _ in range(2000)]:
                f.result(30)  # warm-up (and the completers' pool made)
            lock = threading.Lock()
            state = {"issued": 0, "done": 0, "error": None}
            finished = threading.Event()

            def on_done(f) -> None:
                e = f.exception()
                with lock:
                    state["done"] += 1
                    if e is not None and state["error"] is None:
                        state["error"] = e
                    more = state["issued"] < total and state["error"] is None
                    if more:
                        state["issued"] += 1
                    if state["done"] >= total or (state["error"] is not None and state["done"] >= state["issued"]):
                        finished.set()
                if more:
                    a.call_async(bn, "echo", "echo", [1], timeout=30).add_done_callback(on_done)
            t0 = time.perf_counter()
            with lock:
                state["issued"] = 32
            for _ in range(32):
                a.call_async(bn, "echo", "echo", [1], timeout=30).add_done_callback(on_done)
            if not finished.wait(600) or state["error"] is not None:
                raise RuntimeError(f"python_32_async: {state}")
            return total / (time.perf_counter() - t0)


def python_32_threads(total: int) -> float:
    """32 threads, each making blocking calls until `total` are done; calls/s."""
    import threading
    import kith
    with tempfile.TemporaryDirectory() as d:
        opts = dict(listen="tcp://127.0.0.1:0", cookie="kith-bench-cookie")
        with kith.Node("a@bench", key_dir=os.path.join(d, "a"), **opts) as a, \
             kith.Node("b@bench", key_dir=os.path.join(d, "b"), services=["echo"], **opts) as b:
            bn = a.connect(b.endpoint, b.key)
            lock = threading.Lock()
            issued = [0]

            def worker() -> None:
                while True:
                    with lock:
                        if issued[0] >= total:
                            return
                        issued[0] += 1
                    a.call(bn, "echo", "echo", [1])

            threads = [threading.Thread(target=worker) for _ in range(32)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return total / (time.perf_counter() - t0)


def python_rpc(warmup: int, n: int) -> "list[float]":
    import kith
    with tempfile.TemporaryDirectory() as d:
        opts = dict(listen="tcp://127.0.0.1:0", cookie="kith-bench-cookie")
        workers = int(os.environ.get("KITH_BENCH_WORKERS", "0"))
        with kith.Node("a@bench", key_dir=os.path.join(d, "a"), workers=workers, **opts) as a, \
             kith.Node("b@bench", key_dir=os.path.join(d, "b"), workers=workers, services=["echo"], **opts) as b:
            bn = a.connect(b.endpoint, b.key)
            call, clock = a.call, time.perf_counter
            lat = []
            for i in range(warmup + n):
                t0 = clock()
                call(bn, "echo", "echo", [i])
                dt = clock() - t0
                if i >= warmup:
                    lat.append(dt * 1e6)
            lat.sort()
            return lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.environ.get("KITH_BUILD_DIR", os.path.join(ROOT, "build")))
    ap.add_argument("-n", type=int, default=20000)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(args.build, "bindings", "python"))
    bench = os.path.join(args.build, "tests", "bench", "kith_bench")
    cpp = cpp_figure(bench, "rpc", "rpc_p50_us")
    cpp32 = cpp_figure(bench, "rpc32", "rpc_32_callers_calls_per_s")
    lat = python_rpc(2000, args.n)
    p50, p99 = lat[len(lat) // 2], lat[len(lat) * 99 // 100]
    print(f"python_rpc_p50_us {p50:.6g} us")
    print(f"python_rpc_p99_us {p99:.6g} us")
    if cpp > 0:
        print(f"python_rpc_p50_vs_cpp_rpc_p50_ratio {p50 / cpp:.6g} x (target <= 2)")
    else:
        print("python_rpc_note: C++ rpc_p50_us not measured (kith_bench missing or failed)")
    py32 = python_32_async(50000)
    print(f"python_rpc_32_callers_calls_per_s {py32:.6g} calls/s (call_async, 32 outstanding)")
    if cpp32 > 0:
        print(f"python_rpc_32_callers_vs_cpp_ratio {py32 / cpp32:.6g} x")
    py32t = python_32_threads(50000)
    print(f"python_rpc_32_threads_calls_per_s {py32t:.6g} calls/s (32 threads, blocking call)")
    if cpp32 > 0:
        print(f"python_rpc_32_threads_vs_cpp_ratio {py32t / cpp32:.6g} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
