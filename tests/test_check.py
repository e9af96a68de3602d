"""adamref.check: accepts every correct Adam, rejects each known fault and names it.

The wrong Adams live in ``tests/wrong_adams.py``, written as the mistakes are
made in practice, independently of the check's own fault switches.  Every
check here runs ``quick=True`` (a few steps, small tensors, both dtypes, the
whole configuration matrix).  ``bitwise`` is measured against torch's fused
kernel on the build that runs the tests and every other verdict against a
derived bound, so the assertions hold on every CPU capability (run natively,
under ``ATEN_CPU_CAPABILITY=avx2`` and ``=default``, and on one thread); only
the claim that ``adamref.cpu`` is bitwise in every configuration is limited
to the builds in ``adamref.cpu.TORCH_BITWISE_BUILDS`` (AVX512, AVX2).
"""

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from adamref import check as kit
from adamref import cpu, reference
from wrong_adams import RIGHT, WRONG, PlainAdam, WrongAdamW

BITWISE = torch.backends.cpu.get_cpu_capability() in cpu.TORCH_BITWISE_BUILDS
MODES = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def verdicts(report) -> set:
    return {r.verdict for r in report.results}


# ---------------------------------------------------------------- accepted
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["torch.optim:Adam", "torch.optim:AdamW"])
def test_accepts_torch_adam_and_adamw_in_every_mode(name, mode):
    report = kit.check(name, kwargs=MODES[mode], quick=True)
    assert report.ok, report.format()
    assert "skipped" not in verdicts(report)
    if mode == "fused":          # fused is what "bitwise" is measured against
        assert verdicts(report) == {"bitwise"}


@pytest.mark.parametrize("mode", ["for-loop", "foreach"])
def test_accepts_torch_adamax(mode):
    report = kit.check("torch.optim:Adamax", kwargs=MODES[mode], quick=True)
    assert report.ok and report.kind == "adamax", report.format()


@pytest.mark.parametrize("backend", [reference, cpu], ids=lambda m: m.__name__)
@pytest.mark.parametrize("fn", ["adam_step", "adamax_step"])
def test_accepts_every_adamref_backend(backend, fn):
    report = kit.check(getattr(backend, fn), quick=True)
    assert report.ok, report.format()
    if backend is cpu and BITWISE:
        assert verdicts(report) == {"bitwise"}, report.format()


@pytest.mark.skip(reason="adamref.cuda steps device arrays and the kit passes NumPy arrays "
                         "on the CPU; adamref.cuda is checked by tests/test_cuda.py")
def test_cuda_backend():
    """Placeholder: the kit does not yet move a case's arrays to a GPU."""


@pytest.mark.parametrize("cls", RIGHT, ids=lambda c: c.__name__)
def test_accepts_correct_adams_written_otherwise(cls):
    """A for-loop Adam, the paper's m_hat/v_hat form, one computing in float64 inside
    (its v does not overflow where torch's does): right, within the bound, not bitwise."""
    report = kit.check(cls, quick=True)
    assert report.ok and "ulps" in verdicts(report), report.format()
    assert all(r.bound_used <= 1 for r in report.results)


# ---------------------------------------------------------------- rejected and named
@pytest.mark.parametrize("fault", WRONG)
def test_rejects_each_known_fault_and_names_it(fault):
    report = kit.check(WRONG[fault], quick=True)
    assert not report.ok
    assert report.diagnosis["fault"] == fault, report.format()
    assert any(fault in r.diagnosis for r in report.results if r.verdict == "wrong")


def test_adamw_doing_l2_is_decay_swapped():
    report = kit.check(WrongAdamW, kind="adamw", quick=True)
    assert not report.ok and report.diagnosis["fault"] == "decay-swapped", report.format()
    assert "pass --kind adam" in report.format()


def test_a_step_that_raises_is_wrong_and_says_so():
    class CrashesAtLr0(PlainAdam):
        def bias_corrections(self, beta1, beta2, t):
            if self.param_groups[0]["lr"] == 0:
                raise ZeroDivisionError("lr is 0")
            return super().bias_corrections(beta1, beta2, t)

    report = kit.check(CrashesAtLr0, quick=True)
    wrong = [r for r in report.results if r.verdict == "wrong"]
    assert wrong and all(r.case == "lr=0" for r in wrong)
    assert wrong[0].note == "raised ZeroDivisionError: lr is 0"


def eps_outside_max(p, g, m, u, t, *, lr, beta1, beta2, eps, weight_decay, maximize):
    """Adamax as the paper writes it plus eps in the denominator: max(beta2 u, |g|) + eps."""
    g = -g if maximize else g
    g = g + weight_decay * p if weight_decay else g
    m += (1 - beta1) * (g - m)
    np.maximum(beta2 * u, np.abs(g), out=u)
    p -= lr / (1 - beta1 ** t) * m / (u + eps)


def maximize_ignored_step(p, g, m, v, t, **hyper):
    reference.adam_step(p, g, m, v, t, **dict(hyper, maximize=False))


def test_rejects_wrong_step_functions():
    report = kit.check(eps_outside_max, kind="adamax", quick=True)
    assert not report.ok and report.diagnosis["fault"] == "eps-outside-max", report.format()
    report = kit.check(maximize_ignored_step, quick=True)
    assert report.diagnosis["fault"] == "maximize-ignored", report.format()


def test_two_faults_at_once_are_named_as_a_pair():
    class Both(PlainAdam):                # no bias correction and maximize ignored
        bias_corrections = WRONG["no-bias-correction"].bias_corrections
        maximize_sign = WRONG["maximize-ignored"].maximize_sign

    report = kit.check(Both, quick=True)
    assert report.diagnosis["fault"] == "no-bias-correction + maximize-ignored", report.format()


def test_a_deviation_no_fault_explains_is_unrecognised():
    class Sloppy(PlainAdam):              # lr off by 1e-4: no known fault, a deviation
        def bias_corrections(self, beta1, beta2, t):
            bc1, bc2 = super().bias_corrections(beta1, beta2, t)
            return bc1 * (1 + 1e-4), bc2

    report = kit.check(Sloppy, quick=True)
    assert not report.ok and report.diagnosis["fault"] is None, report.format()
    assert "unrecognised deviation" in report.format()


def test_unsupported_flags_are_skipped_not_wrong():
    class NoMaximize(PlainAdam):
        def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                     amsgrad=False):
            super().__init__(params, lr, betas, eps, weight_decay, amsgrad)

    report = kit.check(NoMaximize, quick=True)
    skipped = {r.case for r in report.results if r.verdict == "skipped"}
    assert report.ok and any("maximize" in c for c in skipped)
    assert all("maximize" in c or "decoupled" in c for c in skipped)   # nor decoupled_weight_decay


def test_the_matrix_covers_the_issue():
    """Every residue mod 16, both dtypes, t up to 1e6, extreme hyperparameters and inputs."""
    rows = kit._cases("adam", quick=True, dtypes=kit.DTYPES)
    residues = {n % 16 for _, _, _, _, sizes in rows for n in sizes}
    assert residues == set(range(16))
    assert {dtype.name for _, dtype, *_ in rows} == {"float32", "float64"}
    assert max(case.t0 for case, *_ in rows) == 10**6
    hypers = [h for _, _, h, _, _ in rows]
    assert {0.0, 3.0} <= {h["lr"] for h in hypers}
    assert {0.0, 1e-30, 1.0} <= {h["eps"] for h in hypers}
    assert {True} == {h["decoupled"] for h in hypers if h["weight_decay"] and h["amsgrad"]
                      and h["maximize"]}
    grads = {case.grads for case, *_ in rows}
    assert {"range", "zero", "nonfinite", "small"} <= grads


# ---------------------------------------------------------------- the command
def test_cli_json_is_well_formed_and_exit_status_zero(capsys):
    assert kit.main(["torch.optim:Adam", "--kwargs", '{"fused": true}', "--quick",
                     "--json", "--dtype", "float32"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["counts"] == {"bitwise": len(report["results"])}
    assert report["build"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_cli_json_of_a_wrong_optimizer_is_strict_json(capsys):
    assert kit.main(["wrong_adams:EpsInsideSqrt", "--quick", "--json", "--dtype", "float32"]) == 1
    out = capsys.readouterr().out

    def reject(constant):
        raise ValueError(f"not strict JSON: {constant}")

    report = json.loads(out, parse_constant=reject)
    assert not report["ok"] and report["diagnosis"]["fault"] == "eps-inside-sqrt"
    wrong = [r for r in report["results"] if r["verdict"] == "wrong"]
    assert wrong and all(r["worst"]["array"] in ("p", "m", "v") for r in wrong)


def test_cli_wrong_optimizer_exits_one_and_names_the_fault(tmp_path):
    (tmp_path / "myadam.py").write_text(textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        from wrong_adams import EpsHat as MyAdam
        """ % str(pathlib.Path(__file__).parent)))
    run = subprocess.run([sys.executable, "-m", "adamref.check", "myadam:MyAdam", "--quick"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    assert "eps-hat" in run.stdout and "verdict: WRONG" in run.stdout
    assert "configuration" in run.stdout.splitlines()[3]       # the summary table


@pytest.mark.parametrize("argv, message", [
    (["torch.optim"], "TARGET must be module:Class"),
    (["no_such_module_xyz:Adam"], "cannot import module 'no_such_module_xyz'"),
    (["torch.optim:NoSuchAdam"], "has no attribute 'NoSuchAdam'"),
    (["torch.optim:Adam", "--kwargs", "{fused: 1}"], "--kwargs is not valid JSON"),
    (["torch.optim:Adam", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
    (["torch.optim:Adam", "--kwargs", '{"lr": 1}'], "--kwargs may not set lr"),
    (["torch.optim:Adam", "--kwargs", '{"bogus": 1}'], "cannot construct or step it"),
    (["--step", "adamref.reference:adamax_step", "--kind", "adam"], "cannot call it"),
])
def test_cli_bad_target_is_exit_two_naming_the_argument(argv, message, capsys):
    assert kit.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")
