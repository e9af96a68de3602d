"""Execute notebooks in place, so they are stored with the outputs nbval checks.

    python tools/run_notebooks.py book/*.ipynb

Each notebook runs top to bottom in a fresh kernel of the current Python
environment (the one with ``adamref`` installed), from its own folder, with a
fixed hash seed so that every run gives the same outputs.  Per-cell execution
timestamps are not stored, so that a diff shows only real changes.
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    os.environ["PYTHONHASHSEED"] = "0"
    os.environ["ADAMREF_STATIC"] = "1"         # knobs (adamref.lab.knobs) store no widgets
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    for cell in nb.cells:                  # no timestamps: a diff shows real changes only
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: {run(Path(name)):.1f} s", flush=True)
