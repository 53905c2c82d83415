#!/usr/bin/env bash
# Relock after changing pyproject.toml's dependencies: poetry.lock with Poetry, then constraints.txt from the lock.
#
#     scripts/update_lock.sh
#
# Needs Poetry 2.x (`poetry` on PATH, or POETRY_PYTHON = the Python of Poetry's own venv) and Python 3.11+.
# `poetry lock` keeps the versions already locked and resolves only what changed. Where the package index answers the
# simple API but not Poetry's per-release JSON, Poetry runs through the poetry-simple-index.py wrapper: set
# POETRY_SIMPLE_INDEX to it (default ../shared/tools/poetry-simple-index.py, used when that file exists).
set -euo pipefail
cd "$(dirname "$0")/.."
wrapper=${POETRY_SIMPLE_INDEX:-../shared/tools/poetry-simple-index.py}
if [ -f "$wrapper" ]; then
    if [ -z "${POETRY_PYTHON:-}" ]; then
        poetry=$(command -v poetry) || { echo "error: poetry not on PATH; set POETRY_PYTHON" >&2; exit 2; }
        POETRY_PYTHON=$(sed -n '1s/^#!//p' "$poetry")
    fi
    "$POETRY_PYTHON" "$wrapper" lock
else
    poetry lock
fi
"${PYTHON:-python3}" scripts/constraints_from_lock.py
