"""book/environment.md states the versions behind the book's numbers: they must be the lock's."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_version_on_the_environment_page_is_the_locked_one():
    locked = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", (ROOT / "requirements.txt").read_text(),
                             re.M))
    page = (ROOT / "book" / "environment.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| ([0-9][^ |]*)", page, re.M)
    assert len(rows) >= 5, "the page's package table was not found"
    for name, version in rows:
        assert locked.get(name) == version, (
            f"environment.md says {name} {version}, requirements.txt pins {locked.get(name)}")
