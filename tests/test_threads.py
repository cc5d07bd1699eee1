"""Threads: the kernels release the GIL, concurrent calls from several Python threads give the
serial results, and convkit.set_num_threads changes nothing beyond rounding.

- Same results: each op is computed once serially, then by 4 Python threads at once (started
  together on a barrier, several calls each); every concurrent result must equal the serial one
  bit for bit -- kernels split work over independent outputs (csrc/convkit/parallel.h), so a call
  does not depend on what other calls run beside it.
- Concurrency: a worker thread runs a kernel repeatedly while the main thread keeps executing
  Python and records timestamps. With the GIL held during the kernel, no main-thread timestamp
  could fall strictly inside a kernel call; with it released, most calls contain some.
- Thread counts: 1, 2 and 3 threads against 1 thread, within a rounding bound.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import convkit
import convkit.functional as F
from convkit import models, nn

RNG = np.random.default_rng(99)


def rnd(*shape, dt=np.float32):
    return RNG.standard_normal(shape).astype(dt)


def _pool_case(dt):
    x = rnd(4, 16, 33, 33, dt=dt)
    y, idx = F.max_pool2d(x, 3, 2, 1, True, return_indices=True)
    dy = rnd(*y.shape, dt=dt)
    return lambda: (F.max_pool2d(x, 3, 2, 1, True), F.max_pool2d_backward(dy, idx, x.shape, 3, 2, 1, True))


def _conv_case(dt):
    x, w, b = rnd(4, 16, 30, 30, dt=dt), rnd(32, 8, 3, 3, dt=dt), rnd(32, dt=dt)
    dy = rnd(4, 32, 30, 30, dt=dt)
    geo = dict(padding=1, groups=2)
    return lambda: (F.conv2d(x, w, b, **geo), F.conv2d_backward_data(dy, w, x.shape, **geo),
                    F.conv2d_backward_weight(x, dy, w.shape, **geo), F.conv2d_backward_bias(dy))


def _lrn_case(dt):
    x = rnd(4, 32, 20, 20, dt=dt)
    y, s = F.local_response_norm(x, 5, 1e-2, 0.75, 2.0, return_scale=True)
    dy = rnd(*x.shape, dt=dt)
    return lambda: (F.local_response_norm(x, 5, 1e-2, 0.75, 2.0),
                    F.local_response_norm_backward(x, y, s, dy, 5, 1e-2, 0.75, 2.0))


def _linear_case(dt):
    x, w, b, dy = rnd(64, 400, dt=dt), rnd(300, 400, dt=dt), rnd(300, dt=dt), rnd(64, 300, dt=dt)
    return lambda: (F.linear(x, w, b), F.linear_backward_data(dy, w), F.linear_backward_weight(x, dy),
                    F.linear_backward_bias(dy))


def _softmax_case(dt):
    x, dy, labels = rnd(256, 1000, dt=dt), rnd(256, 1000, dt=dt), RNG.integers(0, 1000, 256)
    return lambda: (F.softmax(x), F.log_softmax(x), F.softmax_backward(F.softmax(x), dy),
                    F.softmax_cross_entropy(x, labels)[0])


def _elementwise_case(dt):
    x, dy = rnd(64, 32, 32, dt=dt), rnd(64, 32, 32, dt=dt)
    return lambda: (F.relu(x), F.relu_backward(dy, F.relu(x)), *F.dropout(x, 0.3, 11))


def _lenet_case(dt):
    m = models.lenet5(seed=3, dtype=dt)
    x = rnd(16, 1, 28, 28, dt=dt)
    labels = RNG.integers(0, 10, 16)

    def run():
        # forward and backward of a model share module caches: each thread needs its own copy
        mm = models.lenet5(seed=3, dtype=dt)
        mm.load_state_dict(m.state_dict())
        y = mm.forward(x)
        _, d = nn.cross_entropy(y, labels)
        dx = mm.backward(d)
        return (y, dx, *[p.grad for p in mm.parameters()])
    return run


CASES = {"conv2d": _conv_case, "max_pool2d": _pool_case, "lrn": _lrn_case, "linear": _linear_case,
         "softmax": _softmax_case, "elementwise": _elementwise_case, "lenet5": _lenet_case}


@pytest.fixture
def threads_restored():
    old = convkit.get_num_threads()
    yield
    convkit.set_num_threads(0)
    assert convkit.get_num_threads() == old


def _flat(results):
    return [np.asarray(r) for r in (results if isinstance(results, tuple) else (results,))]


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_concurrent_calls_equal_serial(case, dt, threads_restored):
    run = CASES[case](dt)
    for nt in (1, 2):
        convkit.set_num_threads(nt)
        serial = _flat(run())
        barrier = threading.Barrier(4)

        def worker(_):
            barrier.wait()
            return [_flat(run()) for _ in range(3)]

        with ThreadPoolExecutor(4) as ex:
            outs = list(ex.map(worker, range(4)))
        for per_thread in outs:
            for got in per_thread:
                for g, s in zip(got, serial):
                    np.testing.assert_array_equal(g, s, err_msg=f"{case}: a concurrent call differs from the serial one")


LONG_CALLS = {
    # one call of roughly 8-100 ms on one core: long enough for several of the main thread's ticks
    # (every 0.5-1 ms) to land inside it (at 1.1 ms, LRN's call once caught only the 2 edge ticks)
    "conv2d": lambda: (lambda x, w: lambda: F.conv2d(x, w, padding=1))(rnd(16, 32, 32, 32), rnd(64, 32, 3, 3)),
    "conv2d_backward_data": lambda: (lambda dy, w: lambda: F.conv2d_backward_data(dy, w, (16, 32, 32, 32), padding=1))(
        rnd(16, 64, 32, 32), rnd(64, 32, 3, 3)),
    "conv2d_backward_weight": lambda: (lambda x, dy: lambda: F.conv2d_backward_weight(x, dy, (64, 32, 3, 3), padding=1))(
        rnd(16, 32, 32, 32), rnd(16, 64, 32, 32)),
    "linear": lambda: (lambda x, w: lambda: F.linear(x, w))(rnd(512, 1024), rnd(1024, 1024)),
    "max_pool2d": lambda: (lambda x: lambda: F.max_pool2d(x, 3, 1, 1))(rnd(32, 64, 64, 64)),
    "local_response_norm": lambda: (lambda x: lambda: F.local_response_norm(x, 5))(rnd(32, 64, 48, 96)),
    "softmax": lambda: (lambda x: lambda: F.log_softmax(x))(rnd(2048, 2048)),
    "relu": lambda: (lambda x: lambda: F.relu(x))(rnd(24, 1024, 1024)),
}


@pytest.mark.parametrize("op", sorted(LONG_CALLS))
def test_kernels_release_the_gil(op, threads_restored):
    convkit.set_num_threads(1)
    call = LONG_CALLS[op]()
    call()  # warm up (workspace, page faults)
    intervals, ticks = [], []
    done = threading.Event()

    def worker():
        try:
            for _ in range(6):
                t0 = time.perf_counter()
                call()
                intervals.append((t0, time.perf_counter()))
        finally:
            done.set()

    th = threading.Thread(target=worker)
    th.start()
    while not done.is_set():   # the main thread keeps running Python while the kernel runs
        ticks.append(time.perf_counter())
        time.sleep(0.0005)     # let the worker take the GIL between its calls
    th.join()
    ticks = np.array(ticks)
    inside = [int(np.sum((ticks > a) & (ticks < b))) for a, b in intervals]
    busy = sum(b - a for a, b in intervals)
    # The main thread ticks every ~0.5-1 ms when it can run. GIL held during the kernel: a tick
    # can only land at the edges of a call (the switch between the timestamp and the call), a few
    # per second at most (measured with GIL-holding sorted() calls of 1-5 s: 5-30 ticks per second).
    # Released: hundreds to thousands per second (measured here: 500-2000/s on a loaded machine).
    # Each call may catch up to 2 ticks at its edges whatever the GIL does; the rest must be many.
    assert sum(max(0, n - 2) for n in inside) / busy > 100, (op, inside, [round(b - a, 4) for a, b in intervals])


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_set_num_threads_changes_only_rounding(case, dt, threads_restored):
    run = CASES[case](dt)
    convkit.set_num_threads(1)
    assert convkit.get_num_threads() == 1
    ref = _flat(run())
    # the kernels never reduce in thread order, so in practice the results are identical; the bound
    # allows a different summation split: |diff| <= 1e3 u * (|ref|max of the array), u the unit roundoff
    u = np.finfo(dt).eps / 2
    for nt in (2, 3):
        convkit.set_num_threads(nt)
        assert convkit.get_num_threads() == nt
        for g, r in zip(_flat(run()), ref):
            if g.dtype.kind != "f":
                np.testing.assert_array_equal(g, r)
                continue
            scale = float(np.max(np.abs(r))) if r.size else 0.0
            np.testing.assert_allclose(g, r, rtol=0, atol=1e3 * u * scale, err_msg=f"{case} with {nt} threads")
