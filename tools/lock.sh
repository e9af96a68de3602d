#!/usr/bin/env bash
# Refresh the lock: resolve requirements.in (the direct dependencies) to exact pins of
# every distribution in requirements.txt, with pip-tools, for the Python that runs this
# (3.11 is the one we test).
#   bash tools/lock.sh             keep the current pins, add or drop what requirements.in changed
#   bash tools/lock.sh --upgrade   move every distribution to its newest allowed release
# Arguments go to pip-compile. Afterwards reinstall, re-store the notebooks
# (tools/run_notebooks.py) and run the whole suite: stored outputs were made with the old set.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
python3 -m venv "$tool"
"$tool/bin/pip" install -q pip-tools==7.6.2
"$tool/bin/pip-compile" --quiet --strip-extras --allow-unsafe "$@" \
    --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
    --output-file requirements.txt requirements.in
# A local build label (torch's "+cpu") names one wheel file, not a release: pin the
# release, which every platform's index has under that name.
sed -i -E 's/^(torch==[0-9.]+)\+[a-z0-9]+$/\1/' requirements.txt
echo "requirements.txt refreshed; now re-store the notebooks and run the suite."
