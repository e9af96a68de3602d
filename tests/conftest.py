"""Test set-up: run ``numba.cuda`` on Numba's CPU simulator unless a real GPU is wanted.

pytest imports this file before any test module, so this is the one place
that can choose, for the whole test process, what ``numba.cuda`` is:

* a real GPU when ``ADAMREF_TEST_REAL_GPU=1``, or when the variable is unset
  and ``/dev/nvidia0`` exists (``ADAMREF_TEST_REAL_GPU=0`` forces the
  simulator on a GPU machine);
* otherwise the simulator: ``NUMBA_ENABLE_CUDASIM=1`` is set and
  ``numba.cuda`` imported at once, which fixes the choice for the process.
  It affects ``numba.cuda`` only; the CPU ``@njit`` kernels compile and run
  as usual (``tests/test_cuda.py`` checks that).

The variable is then taken out of ``os.environ`` again (if this file set it),
so that subprocesses -- the notebook kernels that nbval starts, the no-GPU
check in ``tests/test_cuda.py`` -- run as they would outside pytest.  An
explicit ``NUMBA_ENABLE_CUDASIM`` in the environment is left as it is.
"""

import os
import sys

from hypothesis import settings

# Property tests draw the same examples on every run and machine, so that a fresh clone's
# suite passes or fails the same way everywhere; HYPOTHESIS_PROFILE=explore draws new ones.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def _want_real_gpu() -> bool:
    flag = os.environ.get("ADAMREF_TEST_REAL_GPU")
    if flag is not None:
        return flag.strip().lower() not in ("", "0", "false", "no")
    return os.path.exists("/dev/nvidia0")


if not _want_real_gpu() and "numba.cuda" not in sys.modules:
    _we_set_it = "NUMBA_ENABLE_CUDASIM" not in os.environ
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    if "numba" in sys.modules:          # numba read its config already: read it again
        import numba.core.config
        numba.core.config.reload_config()
    try:
        import numba.cuda  # noqa: F401  (the simulator, from now on, in this process)
    except ImportError:                 # no numba-cuda: tests/test_cuda.py skips
        pass
    if _we_set_it:
        del os.environ["NUMBA_ENABLE_CUDASIM"]
