"""The package itself: cheap to import, backends on first use."""

import subprocess
import sys

import pytest


def test_import_is_cheap_and_backends_load_on_first_use():
    code = ("import sys, adamref; heavy = [m for m in ('numba', 'torch', 'matplotlib') "
            "if m in sys.modules]; assert not heavy, heavy; "
            "assert callable(adamref.cpu.adam_step) and callable(adamref.reference.adam_step); "
            "assert 'numba' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute_is_an_attribute_error():
    import adamref
    with pytest.raises(AttributeError, match="nope"):
        adamref.nope
