"""`convkit bench`: the side-by-side harness runs end to end on a small case and writes JSON that the
--markdown mode turns back into the README table (timings themselves are never asserted)."""
import json
import math

import pytest

torch = pytest.importorskip("torch")

from convkit import bench  # noqa: E402


def test_bench_small_case_writes_json_and_markdown(tmp_path, capsys):
    path = tmp_path / "bench.json"
    rc = bench.main(["--filter", "lenet:pool1", "--threads", "1", "--repeats", "3", "--no-nets",
                     "--json", str(path)])
    assert rc == 0
    data = json.loads(path.read_text())
    names = {r["case"] for r in data["results"]}  # LeNet's batches 64 and 256, forward and backward
    assert names == {f"{d}:lenet:pool1 mb{n}ic6ih28iw28_kh2kw2_sh2sw2" for d in ("fwd", "bwd") for n in (64, 256)}
    for r in data["results"]:
        assert r["threads"] == 1
        assert r["max_rel_err"] < 1e-6  # validated against torch before timing: pooling selects, so exact
        assert r["convkit_ms"] > 0 and r["torch_ms"] > 0
        assert math.isclose(r["ratio"], r["convkit_ms"] / r["torch_ms"], rel_tol=1e-6)
    assert data["peak_gflops"]["1"] > 1.0  # a real FMA loop: even a slow core does more than 1 GFLOP/s
    assert not (tmp_path / "bench.json.tmp").exists()
    capsys.readouterr()
    assert bench.main(["--markdown", str(path)]) == 0
    table = capsys.readouterr().out
    assert "`fwd:lenet:pool1 mb64ic6ih28iw28_kh2kw2_sh2sw2`" in table
