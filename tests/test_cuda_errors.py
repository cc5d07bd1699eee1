"""What a machine without a usable CUDA device sees: clear errors that name the op, never a crash.

These run where no device is usable (this CI machine: nvcc is here, a driver is not); on a machine with
a GPU they are skipped, and tests/test_cuda_ops.py runs instead.
"""
import numpy as np
import pytest

import convkit
from convkit import _core
from convkit.device import cuda_available, cuda_unavailable_reason

no_device = pytest.mark.skipif(cuda_available(), reason="a CUDA device is usable here")
compiled = pytest.mark.skipif(not _core.cuda_compiled(), reason="convkit was built without CUDA")

# Every CUDA entry point in csrc/ops/*.h; a new op must add its own (and the probe in elementwise_bind.cpp).
ENTRY_POINTS = {
    "relu_forward", "relu_backward", "dropout_forward", "dropout_backward",
    "conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight", "conv2d_backward_bias",
    "max_pool2d_forward", "max_pool2d_backward", "lrn_forward", "lrn_backward",
    "linear_forward", "linear_backward_data", "linear_backward_weight", "linear_backward_bias",
    "softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "neg", "add", "sum", "fill", "astype", "sgd_update", "adam_update",
}


@compiled
def test_probe_covers_every_entry_point():
    assert set(_core._cuda_entry_points()) == ENTRY_POINTS


@compiled
@no_device
@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_cuda_entry_point_raises_naming_the_op(name):
    # the views claim to be on the device but point nowhere: the entry point must refuse before use
    with pytest.raises(RuntimeError, match=rf"^{name}: no usable CUDA device \(.+\)"):
        _core._cuda_probe(name)


@compiled
def test_probe_refuses_when_a_device_is_usable():
    if not cuda_available():
        pytest.skip("no device: the probe runs (see above)")
    with pytest.raises(RuntimeError, match="only runs without"):
        _core._cuda_probe("relu_forward")


@no_device
def test_device_array_creation_without_device():
    expect = r"DeviceArray: (no usable CUDA device|convkit was built without CUDA support)"
    with pytest.raises(RuntimeError, match=expect):
        convkit.DeviceArray.empty([2, 3])
    with pytest.raises(RuntimeError, match=expect):
        convkit.DeviceArray.zeros([4], np.float64)
    with pytest.raises(RuntimeError, match=expect):
        convkit.DeviceArray.from_numpy(np.ones(3, np.float32))
    with pytest.raises(RuntimeError, match=r"device='cuda' requested but CUDA is not usable: .+"):
        convkit.asarray(np.ones(3, np.float32), device="cuda")
    with pytest.raises(RuntimeError, match=r"device='cuda' requested but CUDA is not usable"):
        convkit.zeros((2, 2), device="cuda")
    with pytest.raises(RuntimeError, match=r"device='cuda' requested but CUDA is not usable"):
        convkit.empty(5, np.float64, device="cuda")


@no_device
def test_reason_is_reported():
    reason = cuda_unavailable_reason()
    assert reason
    info = convkit.info()
    assert info["cuda_usable"] is False and info["cuda_reason"] == reason


def test_bad_arguments_before_the_device_is_touched():
    # argument errors come first, whatever the device situation
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'cuda', got 'gpu'"):
        convkit.asarray(np.ones(3), device="gpu")
    with pytest.raises(TypeError, match=r"dtype must be float32, float64, int64 or uint8, got int32"):
        convkit.zeros(3, np.int32)
    with pytest.raises(ValueError, match=r"DeviceArray: negative dimension -1"):
        convkit.DeviceArray.empty([2, -1])


def test_from_dlpack_rejects_cpu_arrays():
    with pytest.raises(ValueError, match=r"from_dlpack: the array is not in CUDA memory \(DLPack device type 1\)"):
        convkit.from_dlpack(np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"from_dlpack: list does not implement __dlpack__"):
        convkit.from_dlpack([1.0, 2.0])


def test_synchronize_without_device_is_a_no_op():
    convkit.synchronize()  # device-agnostic code may call it anywhere
