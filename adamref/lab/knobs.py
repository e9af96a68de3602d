"""Knobs: sliders that redraw a chapter's figure when the notebook runs live.

A chapter draws its figure with a function of the parameters a reader may want
to turn (``beta1``, ``eps``, the noise level ...), calls it once with the
default values -- that static figure is what the book shows and what nbval
checks -- and then hands the same function to :func:`knob`::

    def draw(beta=0.9, sigma=1.0):
        ...                          # plot, plt.show()

    draw()                           # the stored, static figure
    knob(draw, beta=(0.0, 0.99, 0.01), sigma=(0.1, 4.0, 0.1))

In JupyterLab, :func:`knob` shows sliders (``ipywidgets.interact``) and the
figure redrawn for their values. When the notebook is executed to be stored
or checked (``tools/run_notebooks.py``, nbval under pytest), the variable
``ADAMREF_STATIC=1`` is set and :func:`knob` displays nothing, so the stored
output never holds a widget (whose ids change on every run).
"""

from __future__ import annotations

import os

__all__ = ["knob", "static"]


def static() -> bool:
    """True when the notebook is being executed to be stored or checked."""
    return os.environ.get("ADAMREF_STATIC", "") not in ("", "0")


def knob(draw, **ranges):
    """Sliders for ``draw``'s keyword arguments, live in JupyterLab; nothing when static.

    ``ranges`` maps each argument to ``(low, high, step)`` (or anything
    ``ipywidgets.interact`` accepts: a list of choices, a widget). The
    sliders start at ``draw``'s defaults.
    """
    if static():
        return None
    import ipywidgets

    return ipywidgets.interact(draw, **ranges)
