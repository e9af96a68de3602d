"""The suite again, as other machines run it: one thread, other torch kernels, another BLAS.

A stored notebook output that depends on the last bit of a chaotic computation
passes here and fails on a reader's laptop. Three things change those last bits
between machines, and each can be imitated here:

* the number of threads, which changes the order of reductions in BLAS, NumPy,
  Numba's ``prange`` loops and torch: every notebook runs again under nbval with
  one thread everywhere;
* the kernel torch picks for the CPU it finds (``ATEN_CPU_CAPABILITY``): the
  torch-parity tests and every notebook run again with ``avx2`` (what most
  x86-64 laptops run) and ``default`` (torch's portable non-SIMD kernel, the
  stand-in for ARM builds, which we cannot run here);
* the BLAS behind torch's matrix products (MKL here; OpenBLAS or Accelerate on
  ARM), which sums in another order and so changes the last bit of some
  elements of every product: every notebook runs again with torch's matrix
  products and convolutions moved by at most one ulp, as a function of the
  result's bits (``tests/blas_perturbation.py``, loaded into the child and
  into nbval's kernels through a ``sitecustomize.py``).  Two identical
  computations still agree bit for bit, but every trained network follows
  another trajectory, as it would on another BLAS.  NumPy's ``@`` cannot be
  patched this way; the one-thread run changes its summation order instead.

Each run is a child ``pytest`` in a fresh process, because the thread counts and
torch's kernel are fixed when the libraries load. Its tail is shown on failure.
"""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import blas_perturbation

ROOT = Path(__file__).resolve().parents[1]
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
#: The tests whose expectations depend on torch's CPU kernel.
TORCH_PARITY = ["tests/test_cpu.py", "tests/test_reference.py", "tests/test_optim.py",
                "tests/test_nadam_radam.py", "tests/test_check.py",
                "tests/test_distributed.py"]
X86 = platform.machine().lower() in ("x86_64", "amd64")


def run_pytest(paths, env_changes):
    """Run ``pytest paths`` in a child process with ``env_changes``; fail with its tail."""
    env = dict(os.environ, PYTHONHASHSEED="0", **env_changes)
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_CURRENT_TEST"):
        env.pop(name, None)
    command = [sys.executable, "-m", "pytest", "-q", "-n", "0",
               *paths]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    summary = done.stdout.strip().splitlines()[-1:] or ["(no output)"]
    assert done.returncode == 0, (
        f"{' '.join(f'{k}={v}' for k, v in env_changes.items())} pytest {' '.join(paths)}: "
        f"{summary[0]}\n" + "\n".join(done.stdout.splitlines()[-60:]) + done.stderr[-2000:])
    return summary[0]


# One class per run: pytest-xdist (--dist loadscope) gives each class to its own worker.
class TestOneThread:
    def test_every_notebook_with_one_thread_everywhere(self):
        run_pytest(["book"], ONE_THREAD)


class TestTorchAVX2:
    def test_torch_parity_and_notebooks(self):
        if not X86:
            pytest.skip(f"ATEN_CPU_CAPABILITY=avx2 is an x86-64 kernel; this is a "
                        f"{platform.machine()}")
        run_pytest([*TORCH_PARITY, "book"], {"ATEN_CPU_CAPABILITY": "avx2"})


class TestTorchDefault:
    def test_torch_parity_and_notebooks(self):
        run_pytest([*TORCH_PARITY, "book"], {"ATEN_CPU_CAPABILITY": "default"})

    def test_the_variable_really_changes_torchs_kernel(self):
        """Guards the runs above: without it they could pass by testing nothing new."""
        code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
        env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == "DEFAULT"


class TestOtherBLAS:
    def test_every_notebook_with_torchs_products_moved_by_one_ulp(self, tmp_path):
        run_pytest(["book"], blas_perturbation.environment(tmp_path))

    def test_the_harness_really_moves_torchs_products(self, tmp_path):
        """Guards the run above: without it, it could pass by testing nothing new.

        In a child started with the harness, each of torch's product entry
        points gives another result than without it, by at most one ulp per
        element, and the same product computed twice (or through two entry
        points that agree without the harness) still agrees bit for bit.
        """
        code = ("import torch\ntorch.manual_seed(0)\n"
                "g = torch.Generator().manual_seed(0)\n"
                "a, b = torch.randn(64, 48, generator=g), torch.randn(48, 32, generator=g)\n"
                "x = torch.randn(8, 3, 12, 12, generator=g)\n"
                "k = torch.randn(4, 3, 3, 3, generator=g)\n"
                "w = torch.randn(32, 48, generator=g, requires_grad=True)\n"
                "ys = [a @ b, torch.matmul(a, b), torch.mm(a, b), a.matmul(b),\n"
                "      torch.nn.functional.linear(a, w), torch.nn.Linear(48, 32)(a),\n"
                "      torch.bmm(a[None], b[None])[0], torch.addmm(b[0], a, b),\n"
                "      torch.baddbmm(b[0], a[None], b[None])[0],\n"
                "      torch.nn.functional.conv2d(x, k)]\n"
                "ys[4].sum().backward()\n"
                "torch.save(([y.detach() for y in ys], w.grad, a @ b), 'out.pt')\n")
        results = {}
        for name, env_changes in [("plain", {"ADAMREF_PERTURB_BLAS": "0"}),
                                  ("moved", blas_perturbation.environment(tmp_path))]:
            run_dir = tmp_path / name
            run_dir.mkdir()
            subprocess.run([sys.executable, "-c", code], cwd=run_dir, check=True,
                           env=dict(os.environ, **env_changes))
            results[name] = torch.load(run_dir / "out.pt")
        (plain, plain_grad, _), (moved, moved_grad, again) = results["plain"], results["moved"]
        assert torch.equal(moved[0], again)                # a function of the bits
        for k in (1, 2, 3):                                # a @ b by other names
            assert torch.equal(moved[0], moved[k]) == torch.equal(plain[0], plain[k])
        assert torch.equal(plain_grad, moved_grad)         # gradients pass through
        for k, (p, m) in enumerate(zip(plain, moved)):
            assert not torch.equal(p, m), k                # every product is moved ...
            ulp = torch.nextafter(p.abs(), torch.tensor(float("inf"))) - p.abs()
            assert torch.all((m - p).abs() <= ulp), k      # ... by at most one ulp
