"""Memory: repeated training steps keep the resident set flat, and a request far beyond memory
raises MemoryError (and leaves the process healthy).

Resident memory is read from /proc/self/statm (resident pages x page size) after a warm-up that
lets every cache settle (per-thread kernel workspaces, the allocator's free lists, numpy's small
block cache). A leak of one buffer per step shows up as growth proportional to the step count, so
each test compares the growth over a long run with what the smallest plausible leak would add:

- LeNet-5, batch 64, 300 forward/backward/SGD steps: the smallest per-step allocation in the step
  is a bias gradient of ~40 bytes, but a realistic leak (a kernel output or workspace left alive)
  is at least one activation: relu4's output, 64 x 84 x 4 B = 21 KB. 300 steps of that leak grow
  by >= 6.3 MB. The bound is 4 MB (glibc's arena trimming and page-granular accounting move the
  RSS by 1-2 MB; measured growth here: see the assertion message).
- AlexNet (the lecture's), batch 2, 6 steps after 2 warm-up steps: every array of a step is at
  least 2 x 1000 x 4 B (the logits); the large ones (fc6's weight gradient, 151 MB; conv1's output,
  2.3 MB) dominate any real leak. The bound is 32 MB over 6 steps (the allocator's mmap threshold
  adapts to the 151 MB blocks in the first steps; measured growth: see the message).

Skipped under the sanitizer job (ASan's quarantine holds freed memory by design) and where
/proc/self/statm does not exist.
"""
import gc
import os

import numpy as np
import pytest

import convkit.functional as F
from convkit import models, nn, optim

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc/self/statm"),
    pytest.mark.skipif(bool(os.environ.get("CONVKIT_SANITIZED")),
                       reason="AddressSanitizer's quarantine keeps freed memory resident"),
]
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 1 << 20


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def train_steps(model, x, labels, opt, steps):
    for _ in range(steps):
        opt.zero_grad()
        y = model.forward(x)
        _, d = nn.cross_entropy(y, labels)
        model.backward(d)
        opt.step()


def test_lenet_training_keeps_memory_flat():
    rng = np.random.default_rng(0)
    model = models.lenet5(seed=0, dropout=0.2)
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, 64)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train_steps(model, x, labels, opt, 30)        # warm-up
    samples = [rss()]
    for _ in range(6):                             # 6 x 50 = 300 steps
        train_steps(model, x, labels, opt, 50)
        samples.append(rss())
    growth = samples[-1] - samples[0]
    print(f"LeNet-5 RSS after warm-up and every 50 steps: {[round(s / MB, 1) for s in samples]} MB")
    assert growth < 4 * MB, f"RSS grew by {growth / MB:.2f} MB over 300 LeNet steps: {[s // MB for s in samples]} MB"
    # and no steady climb: the last half adds less than the bound too
    assert samples[-1] - samples[3] < 2 * MB, [s // MB for s in samples]


def test_alexnet_training_keeps_memory_flat():
    rng = np.random.default_rng(0)
    model = models.alexnet(num_classes=1000, seed=0)
    x = rng.standard_normal((2, 3, 227, 227)).astype(np.float32)
    labels = np.array([3, 999])
    opt = optim.SGD(model.parameters(), lr=1e-4)
    train_steps(model, x, labels, opt, 2)          # warm-up
    samples = [rss()]
    for _ in range(3):
        train_steps(model, x, labels, opt, 2)
        samples.append(rss())
    growth = samples[-1] - samples[0]
    print(f"AlexNet RSS after warm-up and every 2 steps: {[round(s / MB, 1) for s in samples]} MB")
    assert growth < 32 * MB, f"RSS grew by {growth / MB:.1f} MB over 6 AlexNet steps: {[s // MB for s in samples]} MB"


def test_allocation_far_beyond_memory_raises_memory_error():
    before = rss()
    x, w = np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32)
    # a 2^21 x 2^21 output (16 TiB): the allocation fails cleanly, nothing is touched
    with pytest.raises(MemoryError):
        F.conv2d(x, w, padding=2**20)
    with pytest.raises(MemoryError):
        nn.Conv2d(2**20, 2**20, 2**10)             # 4 EiB of weights
    with pytest.raises(MemoryError):
        models.lenet5(width=1e9)                   # 559 GiB for conv1
    # the process is healthy afterwards and nothing stayed resident
    np.testing.assert_array_equal(F.conv2d(x, w, padding=1)[0, 0], [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert rss() - before < 16 * MB


# ---- the output-array block cache (csrc/bind_util.cpp) ----------------------------------------------

cached_arrays = pytest.mark.skipif(bool(os.environ.get("CONVKIT_SANITIZED")),
                                   reason="sanitized builds allocate every output fresh")


@cached_arrays
def test_freed_outputs_are_reused_and_fully_overwritten():
    from convkit import _core
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6, 28, 28)).astype(np.float32)  # 1.2 MB: cached when freed
    _core._array_cache_clear()
    y = F.relu(x)
    y[...] = np.nan  # garbage in the block that the next output of this size gets
    addr = y.__array_interface__["data"][0]
    del y
    assert _core._array_cache_bytes() >= x.nbytes
    z = F.relu(-x)
    assert z.__array_interface__["data"][0] == addr  # the same block, taken back from the cache
    assert _core._array_cache_bytes() == 0
    np.testing.assert_array_equal(z, np.maximum(-x, 0))
    assert z.flags.c_contiguous and z.flags.writeable and z.flags.aligned
    assert z.__array_interface__["data"][0] % 64 == 0


@cached_arrays
def test_a_view_keeps_its_block_out_of_the_cache():
    from convkit import _core
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
    _core._array_cache_clear()
    y = F.relu(x)
    view = y.reshape(8, -1)[2:]
    kept = view.copy()
    del y  # the view still uses the block: it must not be handed out again
    assert _core._array_cache_bytes() == 0
    z = F.relu(-x)
    assert not np.shares_memory(z, view)
    np.testing.assert_array_equal(view, kept)
    del view
    assert _core._array_cache_bytes() >= x.nbytes


@cached_arrays
def test_cache_is_bounded_and_small_outputs_bypass_it():
    from convkit import _core
    _core._array_cache_clear()
    small = F.relu(np.ones((4, 4), np.float32))  # 64 bytes: plain numpy memory
    assert small.base is None
    del small
    assert _core._array_cache_bytes() == 0
    one = np.ones((1 << 23,), np.float32)
    big = [F.relu(one) for _ in range(10)]  # 10 x 32 MiB freed: at most 256 MiB kept
    del big
    assert 224 * MB < _core._array_cache_bytes() <= 256 * MB
    # a new size evicts the blocks freed longest ago, and its own block is then reused
    other = [F.relu(np.ones((3 << 21,), np.float32)) for _ in range(2)]  # 2 x 24 MiB
    addrs = {a.__array_interface__["data"][0] for a in other}
    del other
    assert _core._array_cache_bytes() <= 256 * MB
    again = F.relu(np.ones((3 << 21,), np.float32))
    assert again.__array_interface__["data"][0] in addrs
    del again
    huge = F.relu(np.ones((1 << 24,), np.float32))  # 64 MiB + the header: a plain numpy array, never cached
    assert huge.base is None
    _core._array_cache_clear()
    del huge
    assert _core._array_cache_bytes() == 0
    _core._array_cache_clear()
    assert _core._array_cache_bytes() == 0
