"""Shared fixtures: the device list (CPU always, CUDA when usable) and torch when installed."""
import os

import numpy as np
import pytest

import convkit
from convkit.device import cuda_unavailable_reason

hypothesis = pytest.importorskip("hypothesis")
hypothesis.settings.register_profile("ci", max_examples=int(os.environ.get("CONVKIT_FUZZ_EXAMPLES", "25")),
                                     deadline=None, derandomize=True)
hypothesis.settings.register_profile("long", max_examples=2000, deadline=None)
hypothesis.settings.load_profile(os.environ.get("CONVKIT_HYPOTHESIS_PROFILE", "ci"))

_CUDA_REASON = cuda_unavailable_reason()
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(bool(_CUDA_REASON), reason=f"no usable CUDA device: {_CUDA_REASON}")),
]


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs the test body once per available device."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def on(device, x):
    """x (numpy) on `device`."""
    return convkit.asarray(x, device=device)
