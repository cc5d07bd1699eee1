"""The built module itself: what it exports, and error messages that keep their numbers.

On the lent H200 machine, whose g++ links libstdc++ into the module, every error message with a number in
it crashed (numpy had loaded the system libstdc++ first and the module's exported copy of the stream code
was half resolved to it). Built the same way here (-static-libstdc++) with PyTorch imported first, the
numbers silently went missing ("clip: lower bound " and nothing after). Two guards: the module exports
nothing but its init function (CMakeLists.txt: --exclude-libs,ALL), and messages are formatted without
iostreams (csrc/convkit/tensor.h: str_cat).
"""
import shutil
import subprocess
import sys

import numpy as np
import pytest

import convkit
from convkit import _core


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF dynamic symbols: Linux only")
def test_module_exports_only_its_init():
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) not installed")
    out = subprocess.run([nm, "-D", "--defined-only", _core.__file__], capture_output=True, text=True, check=True)
    # T: functions. Weak (W/V) template instantiations from headers are identical in every copy; functions
    # of a static archive (libstdc++.a, cudart_static) are not, and must stay inside the module.
    functions = [line.split()[-1] for line in out.stdout.splitlines() if line.split()[1:2] == ["T"]]
    assert functions == ["PyInit__core"], f"{len(functions)} exported functions, e.g. {functions[:5]}"


@pytest.mark.parametrize("lo,hi,text", [
    (2.0, 1.0, "clip: lower bound 2 must be <= upper bound 1"),
    (0.1, -1e-7, "clip: lower bound 0.1 must be <= upper bound -1e-07"),
    (1 / 3, 0.25, "clip: lower bound 0.333333 must be <= upper bound 0.25"),  # printf's %g: 6 digits
    (1e300, -np.inf, "clip: lower bound 1e+300 must be <= upper bound -inf"),
])
def test_error_messages_format_numbers_like_printf(lo, hi, text):
    x = convkit.asarray(np.arange(6, dtype=np.float32))
    with pytest.raises(ValueError) as e:
        _core.unary_op(_core.UNARY_OPS["clip"], x, lo, hi)
    assert str(e.value) == text


def test_error_message_numbers_survive_torch_loaded_first():
    pytest.importorskip("torch")
    code = ("import torch, numpy as np, convkit\n"
            "from convkit import _core\n"
            "x = convkit.asarray(np.ones(3, np.float32))\n"
            "try:\n"
            "    _core.unary_op(_core.UNARY_OPS['clip'], x, 2.5, -7.0)\n"
            "except ValueError as e:\n"
            "    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    # the last line: an editable install may print its rebuild first
    assert r.stdout.strip().splitlines()[-1] == "clip: lower bound 2.5 must be <= upper bound -7"


def test_info_says_whether_the_build_is_sanitized(capsys):
    # the sanitizer job (.ci/sanitize.sh) builds with CONVKIT_SANITIZE=ON and sets CONVKIT_SANITIZED for
    # the tests; every other build must say False (benchmark scripts trust it to warn about timings)
    import json
    import os

    from convkit import cli
    sanitized = bool(os.environ.get("CONVKIT_SANITIZED"))
    assert convkit.info()["sanitized"] is sanitized
    assert cli.main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sanitized"] is sanitized
    assert cli.main(["info"]) == 0
    compiler_line = next(line for line in capsys.readouterr().out.splitlines() if "compiler:" in line)
    assert ("sanitized" in compiler_line) is sanitized and convkit.info()["compiler"] in compiler_line
