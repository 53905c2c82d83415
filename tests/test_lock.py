"""poetry.lock is current for pyproject.toml, constraints.txt is derived from it, and it names no index address."""
import importlib.util
import re
import shutil
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from librispeech.config import REPO_ROOT

RELOCK = "run scripts/update_lock.sh"


def load_script():
    spec = importlib.util.spec_from_file_location("constraints_from_lock",
                                                  REPO_ROOT / "scripts" / "constraints_from_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_toml(name: str) -> dict:
    with open(REPO_ROOT / name, "rb") as handle:
        return tomllib.load(handle)


def test_constraints_txt_is_what_the_script_derives_from_the_lock():
    expected = load_script().constraints_text(read_toml("poetry.lock"))
    assert (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8") == expected, RELOCK


def test_lock_content_hash_is_that_of_pyproject():
    """The hash Poetry stored when it locked equals Poetry's hash of today's pyproject.toml (`poetry check --lock`)."""
    assert load_script().content_hash(read_toml("pyproject.toml")) == \
        read_toml("poetry.lock")["metadata"]["content-hash"], RELOCK


def test_every_declared_dependency_is_locked_at_a_version_it_allows():
    project = read_toml("pyproject.toml")["project"]
    locked = {canonicalize_name(p["name"]): p["version"] for p in read_toml("poetry.lock")["package"]}
    for line in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in poetry.lock: {RELOCK}"
        assert requirement.specifier.contains(locked[name], prereleases=True), \
            f"{name} {locked[name]} is locked, pyproject.toml asks {requirement.specifier}: {RELOCK}"


def test_check_mode_fails_on_a_stale_constraints_file_or_lock(tmp_path, capsys):
    script = load_script()
    for name in ("pyproject.toml", "poetry.lock", "constraints.txt"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    assert script.main(["--check", "--root", str(tmp_path)]) == 0
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(constraints.read_text().replace("\njiwer==", "\njiwer==0", 1))
    assert script.main(["--check", "--root", str(tmp_path)]) == 1
    assert "constraints.txt differs" in capsys.readouterr().err
    shutil.copy(REPO_ROOT / "constraints.txt", constraints)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"tqdm>=4.66,<5",', '"tqdm>=4.66,<5", "rich",'))
    assert script.main(["--check", "--root", str(tmp_path)]) == 1
    assert "poetry.lock is not current" in capsys.readouterr().err


def test_lock_names_no_package_index():
    lock = read_toml("poetry.lock")
    assert all("source" not in package for package in lock["package"])  # every package from the default PyPI
    text = (REPO_ROOT / "poetry.lock").read_text(encoding="utf-8")
    assert not re.search(r"file://|/simple/|/opt/|localhost|127\.0\.0\.1", text)


def poetry_major_version() -> int | None:
    """The major version of the `poetry` on PATH, or None where there is none (or it does not say)."""
    if shutil.which("poetry") is None:
        return None
    result = subprocess.run(["poetry", "--version"], capture_output=True, text=True)
    found = re.search(r"version (\d+)\.", result.stdout)
    return int(found.group(1)) if found else None


# pyproject.toml's [project] table and the lock need Poetry 2 (a distribution's Poetry 1.x reads neither).
@pytest.mark.skipif((poetry_major_version() or 0) < 2, reason="Poetry 2 is not installed")
def test_poetry_itself_finds_the_lock_current():
    result = subprocess.run(["poetry", "check", "--lock"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
