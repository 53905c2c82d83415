"""Write constraints.txt from poetry.lock, the one source of truth for the project's pinned versions.

    python scripts/constraints_from_lock.py            # rewrite constraints.txt
    python scripts/constraints_from_lock.py --check    # exit 1 if constraints.txt or the lock is out of date

constraints.txt pins every package of the lock (the runtime dependencies and the `dev` extra) for pip users:
`pip install -e ".[dev]" -c constraints.txt`. After changing pyproject.toml's dependencies, run
scripts/update_lock.sh, which relocks with Poetry and then runs this script. Needs Python 3.11+ (tomllib) only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HEADER = ("# Made from poetry.lock by scripts/constraints_from_lock.py (run scripts/update_lock.sh); do not edit.\n"
          "# Exact versions for pip: pip install -e \".[dev]\" -c constraints.txt\n")

# Never pinned: torch is only for the optional PyTorch checks (golden fixtures, export parity), and its CPU and CUDA
# builds differ, so the user picks it.
UNPINNED = frozenset({"torch"})

# The parts of pyproject.toml that Poetry's lock hash covers (poetry.packages.locker.Locker, Poetry 2.x)
_HASHED_PROJECT_KEYS = ("requires-python", "dependencies", "optional-dependencies")
_HASHED_LEGACY_POETRY_KEYS = ("dependencies", "source", "extras", "dev-dependencies")
_HASHED_POETRY_KEYS = (*_HASHED_LEGACY_POETRY_KEYS, "group")


def constraints_text(lock: dict) -> str:
    """One `name==version` line per locked package but torch, sorted by name. A package locked at several versions
    (one per environment marker) gets one line per version with its marker."""
    versions = defaultdict(list)
    for package in lock["package"]:
        if package["name"] not in UNPINNED:
            versions[package["name"]].append(package)
    lines = []
    for name in sorted(versions):
        packages = versions[name]
        for package in sorted(packages, key=lambda p: p["version"]):
            marker = package.get("markers") if len(packages) > 1 else None
            if isinstance(marker, dict):  # lock 1.x: markers per group
                marker = " or ".join(f"({m})" for m in sorted(set(marker.values())))
            lines.append(f"{name}=={package['version']}" + (f" ; {marker}" if marker else ""))
    return HEADER + "".join(line + "\n" for line in lines)


def content_hash(pyproject: dict) -> str:
    """The hash Poetry writes to the lock's metadata for this pyproject.toml (Locker._get_content_hash): the lock is
    current iff it equals the lock's `content-hash`, which is what `poetry check --lock` checks."""
    project = pyproject.get("project", {})
    groups = pyproject.get("dependency-groups", {})
    poetry = pyproject.get("tool", {}).get("poetry", {})
    relevant_project = {key: project[key] for key in _HASHED_PROJECT_KEYS if project.get(key) is not None}
    relevant_poetry = {}
    for key in _HASHED_POETRY_KEYS:
        value = poetry.get(key)
        if value is None and (key not in _HASHED_LEGACY_POETRY_KEYS or relevant_project or groups):
            continue
        relevant_poetry[key] = value
    relevant = {}
    if relevant_project:
        relevant["project"] = relevant_project
    if groups:
        relevant["dependency-groups"] = groups
    if relevant:
        relevant["tool"] = {"poetry": relevant_poetry}
    else:
        relevant = relevant_poetry
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def read_toml(path: Path) -> dict:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if constraints.txt or poetry.lock is out of date")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the project folder (default: this checkout)")
    args = parser.parse_args(argv)
    lock = read_toml(args.root / "poetry.lock")
    expected = constraints_text(lock)
    constraints = args.root / "constraints.txt"
    if not args.check:
        constraints.write_text(expected, encoding="utf-8")
        print(f"wrote {constraints} ({expected.count(chr(10)) - HEADER.count(chr(10))} pins)")
    problems = []
    if content_hash(read_toml(args.root / "pyproject.toml")) != lock["metadata"]["content-hash"]:
        problems.append("poetry.lock is not current for pyproject.toml: run scripts/update_lock.sh")
    if args.check and constraints.read_text(encoding="utf-8") != expected:
        problems.append("constraints.txt differs from poetry.lock: run scripts/constraints_from_lock.py")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
