"""adamref: the Adam optimizer derived step by step, and kernels that match PyTorch.

Three backends share one API (see :mod:`adamref.reference`)::

    adam_step(p, g, m, v, t, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled=False, amsgrad=False, v_max=None,
              maximize=False)
    adamax_step(p, g, m, u, t, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, maximize=False)

- :mod:`adamref.reference`: plain NumPy, the executable specification;
- :mod:`adamref.cpu`: Numba kernels, parallel, bit-identical to
  ``torch.optim.Adam(fused=True)`` on float32;
- :mod:`adamref.cuda`: Numba CUDA kernels for arrays on the GPU;
- :mod:`adamref.optim`: ``Adam``, ``AdamW`` and ``Adamax`` as drop-in
  ``torch.optim`` optimizers on those kernels;
- :mod:`adamref.check`: ``python -m adamref.check``, a conformance kit for any Adam.

The chapters' helpers (problems, plots, the small optimizers of Part I,
derivation helpers) live apart, in :mod:`adamref.lab`, with no compatibility
promise.

Backends are imported on first use (``adamref.cpu`` after a plain
``import adamref`` works), so ``import adamref`` stays cheap.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("reference", "cpu", "cuda", "optim", "check", "bench", "lab")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"adamref.{name}")
    raise AttributeError(f"module 'adamref' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
