"""adamref.lab.knobs: sliders live, nothing when a notebook is stored or checked."""

import ipywidgets

from adamref.lab import knobs


def draw(beta=0.9, sigma=1.0):
    return beta * sigma


def test_static_execution_shows_no_widget(monkeypatch):
    monkeypatch.setenv("ADAMREF_STATIC", "1")
    assert knobs.static() and knobs.knob(draw, beta=(0.0, 0.99, 0.01)) is None


def test_live_execution_gives_sliders_that_start_at_the_defaults(monkeypatch):
    monkeypatch.delenv("ADAMREF_STATIC", raising=False)
    shown = knobs.knob(draw, beta=(0.0, 0.99, 0.01), sigma=(0.1, 4.0, 0.1))
    assert not knobs.static()
    sliders = {w.description: w for w in shown.widget.children
               if isinstance(w, ipywidgets.FloatSlider)}
    assert sliders["beta"].value == 0.9 and sliders["sigma"].value == 1.0
    sliders["sigma"].value = 2.0                 # turning a knob calls draw again
    assert shown.widget.result == 0.9 * 2.0
