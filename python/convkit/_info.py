"""convkit.info(): what this build and this machine offer."""
from __future__ import annotations

from . import _core


def info() -> dict:
    """Version, compiler, whether the build is sanitized (ASan + UBSan: slow, timings meaningless), threads,
    CPU instruction set (cpu_isa: the instructions the kernels use; route_isa: whose kernel shapes and
    routes they take, the same unless CONVKIT_ISA=avx512-emulated), and CUDA status (with the reason when
    unusable)."""
    compiled = _core.cuda_compiled()
    n, reason = _core.cuda_device_count()
    devices = []
    for i in range(n):
        try:
            devices.append(_core.cuda_device_name(i))
        except RuntimeError as e:  # a device that enumerates but cannot be queried
            devices.append(f"<error: {e}>")
    return {
        "version": _core.__version__,
        "compiler": _core.compiler(),
        "sanitized": _core.sanitized(),
        "num_threads": _core.num_threads(),
        "cpu_isa": _core.cpu_isa(),
        "route_isa": _core.route_isa(),
        "cuda_compiled": compiled,
        "cuda_usable": n > 0,
        "cuda_devices": devices,
        "cuda_reason": "" if n > 0 else reason,
    }
