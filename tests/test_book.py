"""The book builds with warnings as errors, offline, and its math typesets.

One build per test session (about a minute): the notebooks are stored
executed and ``execute_notebooks`` is off, so the build runs no code.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REMOTE = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


def chapters():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


@pytest.fixture(scope="session")
def html(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    run = subprocess.run([str(jb), "build", "-W", "-n", "--keep-going", "--path-output", str(out), str(ROOT)],
                         capture_output=True, text=True, timeout=900)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "WARNING" not in log, "\n".join(l for l in log.splitlines() if "WARNING" in l)
    return out / "_build" / "html"


def test_every_toc_page_is_built(html):
    for name in chapters():
        assert (html / f"{name}.html").is_file(), name


def test_no_page_loads_anything_remote(html):
    pages = sorted(html.rglob("*.html"))
    assert len(pages) >= len(chapters())
    for page in pages:
        text = page.read_text(encoding="utf-8")
        hits = REMOTE.findall(text)
        assert not hits, f"{page.relative_to(html)} loads remote resources: {hits[:3]}"
    for css in html.rglob("*.css"):
        assert not re.search(r"@import\s+url\(\s*['\"]?(?:https?:)?//", css.read_text(errors="ignore")), css


def test_mathjax_is_served_from_the_build(html):
    text = (html / "book" / "04_bias_correction.html").read_text(encoding="utf-8")
    scripts = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', text, re.I)
    assert scripts, "no MathJax script on a page full of equations"
    for src in scripts:
        assert (html / "book" / src.split("?")[0]).resolve().is_file(), src


def test_figures_are_embedded_files_that_exist(html):
    for name in chapters()[1:]:
        page = html / f"{name}.html"
        for src in re.findall(r'<img[^>]*src="([^"]+)"', page.read_text(encoding="utf-8")):
            if not src.startswith("data:"):
                assert (page.parent / src).resolve().is_file(), (name, src)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("name", [c for c in chapters() if c.split("/")[-1][:1].isdigit()])
def test_math_typesets_in_a_browser(html, name, tmp_path):
    """Load the page offline in headless Chromium and read the DOM after MathJax ran."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path}", "--virtual-time-budget=20000", "--dump-dom",
           (html / f"{name}.html").as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, HOME=str(tmp_path))).stdout
    formulas = dom.count("<mjx-container")        # counts, so a failure does not print the page
    errors = dom.count("<mjx-merror")
    assert formulas >= 10, f"{name}: MathJax typeset only {formulas} formulas"
    assert errors == 0, f"{name}: MathJax reports {errors} TeX error(s)"
