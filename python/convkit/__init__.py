"""convkit: a small, fast CNN engine with hand-written C++ and CUDA kernels.

Arrays are numpy arrays on the CPU and :class:`convkit.DeviceArray` on a CUDA device; every op
dispatches on where its inputs live. ``import convkit`` never needs a GPU, a driver or nvcc.
"""
import os as _os

# OpenMP threads spin-wait between parallel regions by default (hundreds of ms of CPU on a shared
# 2-core machine). Keep the spin short unless the user chose otherwise; set before libgomp loads.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "20000"

from . import _core  # noqa: E402
from ._info import info  # noqa: E402
from .device import (DeviceArray, asarray, cuda_available, device_of, empty, from_dlpack, synchronize,  # noqa: E402
                     to_numpy, zeros, zeros_like)

__version__ = _core.__version__


def _check_isa_request() -> None:
    """CONVKIT_ISA is read once, by the C++ core: say so when its value was not understood or cannot apply
    (the core's own judgement, so the list of values lives in one place, csrc/runtime.cpp)."""
    problem = _core.isa_request_problem()
    if problem:
        import warnings
        warnings.warn(problem, RuntimeWarning, stacklevel=3)


_check_isa_request()


def set_num_threads(n: int) -> None:
    """Threads each CPU kernel uses (n >= 1; 0 restores the default). Applies to every Python thread."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n < 0 or n > 4096:
        raise ValueError(f"set_num_threads: n must be in [0, 4096], got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads each CPU kernel uses."""
    return _core.num_threads()


def _installed_dir(*parts: str) -> str:
    """A directory that the build installs into the package (next to _core), e.g. ("include",)."""
    from pathlib import Path
    for root in (Path(__file__).parent, Path(_core.__file__).parent):  # editable installs: next to _core
        d = root.joinpath(*parts)
        if d.is_dir():
            return str(d)
    raise RuntimeError(f"convkit: {'/'.join(parts)} is missing from this installation ({Path(__file__).parent}); "
                       f"reinstall convkit with pip")


def get_include() -> str:
    """The directory with convkit's C++ headers (convkit/tensor.h, convkit/extension.h, ...), for
    building extension modules; see examples/custom_op."""
    return _installed_dir("include")


def get_cmake_dir() -> str:
    """The directory with convkitConfig.cmake: ``cmake -Dconvkit_DIR=$(python -c "import convkit;
    print(convkit.get_cmake_dir())")`` makes ``find_package(convkit CONFIG)`` find the convkit::headers
    target."""
    return _installed_dir("share", "cmake", "convkit")


__all__ = ["DeviceArray", "asarray", "cuda_available", "device_of", "empty", "from_dlpack", "get_cmake_dir",
           "get_include", "get_num_threads", "info", "set_num_threads", "synchronize", "to_numpy", "zeros",
           "zeros_like"]
