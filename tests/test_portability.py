"""The suite again, as it would run on other machines: one thread, other torch builds.

A stored notebook output that depends on the last bit of a chaotic computation
passes here and fails on a reader's laptop. Two things change those last bits
between machines, and both can be imitated here:

* the number of threads, which changes the order of reductions in BLAS, NumPy,
  Numba's ``prange`` loops and torch: every notebook runs again under nbval with
  one thread everywhere;
* the kernel torch picks for the CPU it finds (``ATEN_CPU_CAPABILITY``): the
  torch-parity tests and every notebook run again with ``avx2`` (what most
  x86-64 laptops run) and ``default`` (torch's portable non-SIMD kernel, the
  stand-in for ARM builds, which we cannot run here).

Each run is a child ``pytest`` in a fresh process, because the thread counts and
torch's kernel are fixed when the libraries load. Its tail is shown on failure.
"""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

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
