"""``python -m adamref.bench`` runs and reports well-formed figures (no speed assertions)."""

import json
import os
import subprocess
import sys

import pytest

from adamref import bench

RATIOS = ("vs_torch_fused", "vs_torch_forloop", "vs_roofline", "vs_reference")


def _bench(*args):
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)         # the real numba.cuda, as a user gets it
    return subprocess.run([sys.executable, "-m", "adamref.bench", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_quick_json_is_well_formed():
    out = _bench("--quick", "--json", "--sizes", "1000,4000", "--repeats", "2", "--threads", "1")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["numba_threads"] == 1
    assert machine["torch_threads"] == 1
    assert report["config"]["sizes"] == [1000, 4000]
    rows = report["rows"]
    assert [r["case"] for r in rows] == ["1 tensor", "1 tensor", "200-tensors flat",
                                         "200-tensors per-tensor"]
    assert [r["n"] for r in rows[:2]] == [1000, 4000]
    for r in rows:
        assert r["dtype"] == "float32"
        assert 0 < r["ms_min"] <= r["ms"] <= r["ms_max"]
        assert r["params_per_s"] > 0 and r["gb_s"] > 0
        assert abs(r["gb_s"] - 28 * r["n"] / r["ms"] / 1e6) < 1e-6 * r["gb_s"]
        for key in RATIOS:
            assert r[key] > 0, key
        assert set(r["timings_ms"]) == {"adamref", "torch_fused", "torch_forloop", "roofline",
                                        "reference"}


def test_table_printer_takes_whatever_keys_the_rows_have():
    rows = [dict(case="1 tensor", n=1000, dtype="float32", ms=0.5, params_per_s=2e6, gb_s=0.056,
                 vs_torch_fused=1.5, vs_copy_roofline=0.8, timings_ms={"x": 1}),
            dict(case="many", n=10**7, dtype="float64", ms=12.0, params_per_s=8e8, gb_s=44.8,
                 vs_torch_fused=None)]
    lines = bench.format_table(rows).splitlines()
    assert lines[0].split() == ["case", "n", "dtype", "ms", "params_per_s", "gb_s",
                                "vs_torch_fused", "vs_copy_roofline"]
    assert "1.50" in lines[2] and "0.80" in lines[2] and "10_000_000" in lines[3]
    assert lines[3].split()[-2:] == ["-", "-"]


def test_sizes_argument_is_validated():
    assert bench.parse_args(["--sizes", "1e4,2.5e5"]).sizes == [10_000, 250_000]
    with pytest.raises(SystemExit):
        bench.parse_args(["--sizes", "lots"])


def test_cuda_without_a_gpu_says_so_and_fails():
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("a GPU is present: --device cuda would really run")
    out = _bench("--device", "cuda", "--quick")
    assert out.returncode != 0
    assert "cuda" in out.stderr.lower()


def test_model_shapes_are_the_real_models():
    import math
    counts = {name: (len(bench.model_shapes(name)),
                     sum(math.prod(s) for s in bench.model_shapes(name)))
              for name in bench.MODELS}
    assert counts == {"mobilenet_v2": (158, 3_504_872), "resnet50": (161, 25_557_032),
                      "gpt2": (148, 124_439_808)}


def test_models_argument_is_validated():
    assert bench.parse_args(["--models", "all"]).models == list(bench.MODELS)
    assert bench.parse_args(["--models", "resnet50,gpt2"]).models == ["resnet50", "gpt2"]
    assert bench.parse_args([]).models is None
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "vgg16"])


def test_model_rows_time_adamref_optim_against_torch_fused_and_the_roofline():
    import numpy as np
    import torch
    sizes = [10, 3, 100]
    rng = np.random.default_rng(0)
    p0, g = (rng.standard_normal(113, dtype=np.float32) for _ in range(2))
    impls = bench._model_implementations(torch, p0, g, False, sizes)
    assert set(impls) == {"adamref", "torch_fused", "roofline"}
    samples = bench._measure(impls, 3, 0.0)
    row = bench._row("tiny (3 tensors)", 113, np.dtype(np.float32), False, samples)
    assert row["vs_torch_fused"] > 0 and row["vs_roofline"] > 0
    # the ceiling is torch fused's time over the roofline's, paired by repetition
    ratios = sorted(f / r for f, r in zip(samples["torch_fused"], samples["roofline"]))
    assert row["ceiling_vs_torch_fused"] == ratios[1]
