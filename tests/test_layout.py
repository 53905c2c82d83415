"""The runtime/tools split: leap.yaml uploads exactly what `import leap_test` loads, the runtime's light modules load
no deep-learning framework, and the telemetry guard has one home."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def _run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def _glob_regex(pattern: str) -> re.Pattern:
    """leap.yaml patterns, gitignore-style: `**` spans folders, `*` stays inside one."""
    parts = []
    for token in re.split(r"(\*\*/?|\*)", pattern):
        if token in ("**", "**/"):
            parts.append(".*")
        elif token == "*":
            parts.append("[^/]*")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts) + r"\Z")


def uploaded_files() -> set[str]:
    """The folder's files, as `leap push` reads the folder (no git needed: a tarball copy, a checkout git will not
    read as another user's), that leap.yaml's include patterns match and its exclude patterns do not."""
    settings = yaml.safe_load((REPO / "leap.yaml").read_text())
    include = [_glob_regex(p) for p in settings["include"]]
    exclude = [_glob_regex(p) for p in settings["exclude"]]
    skipped = {".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache"}  # tools' folders, not walked into
    files = []
    for folder, subfolders, names in os.walk(REPO):
        subfolders[:] = [name for name in subfolders if name not in skipped]
        files += [(Path(folder) / name).relative_to(REPO).as_posix() for name in names]
    return {path for path in files if any(p.match(path) for p in include) and not any(p.match(path) for p in exclude)}


def test_glob_regex_follows_gitignore_style():
    assert _glob_regex("librispeech/*.py").match("librispeech/data.py")
    assert not _glob_regex("librispeech/*.py").match("librispeech/wav2vec2/model.py")
    assert _glob_regex("**/*.h5").match("model/demo-wav2vec2.h5") and _glob_regex("data/**").match("data/a/b.flac")


def test_leap_yaml_uploads_exactly_what_leap_test_imports():
    loaded = json.loads(_run_python(
        "import json, sys\nfrom pathlib import Path\nimport leap_test\nroot = Path.cwd().resolve()\n"
        "files = {str(Path(m.__file__).resolve().relative_to(root)) for m in list(sys.modules.values())\n"
        "         if getattr(m, '__file__', None) and Path(m.__file__).resolve().is_relative_to(root)\n"
        "         and '.venv' not in Path(m.__file__).parts}\n"
        "print(json.dumps(sorted(files)))"))
    uploaded = uploaded_files()
    assert {path for path in uploaded if path.endswith(".py")} == set(loaded)
    assert {"leap.yaml", "requirements.txt", "librispeech/config.yaml", "librispeech/vocab.json"} <= uploaded
    assert not any(path.startswith(("librispeech_tools/", "tests/", "scripts/", "model/", "data/")) for path in uploaded)


@pytest.mark.parametrize("module", ["librispeech.config", "librispeech.data", "librispeech.tokenizer",
                                    "librispeech.audio_features", "librispeech.text_features",
                                    "librispeech.wav2vec2.configuration"])
def test_light_runtime_modules_load_no_framework(module):
    heavy = json.loads(_run_python(
        f"import json, sys\nimport {module}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'torch', 'jax'})))"))
    assert heavy == []


def test_telemetry_guard_has_one_home():
    """Only librispeech/__init__.py sets TL_DISABLE_ANALYTICS; every entry point imports librispeech first (the
    tools through librispeech_tools/__init__.py)."""
    setters = [path for path in REPO.rglob("*.py") if ".venv" not in path.parts and path.parent.name != "tests"
               and 'setdefault("TL_DISABLE_ANALYTICS"' in path.read_text(encoding="utf-8")]
    assert [path.relative_to(REPO).as_posix() for path in setters] == ["librispeech/__init__.py"]
    for entry in ["leap_binder.py", "leap_test.py", "tests/conftest.py", "librispeech_tools/__init__.py"]:
        imports = [line for line in (REPO / entry).read_text().splitlines()
                   if line.startswith(("import ", "from ")) and not line.startswith("from __future__")]
        assert imports and imports[0].startswith("import librispeech"), (entry, imports[:1])


def test_importing_code_loader_through_the_package_sends_nothing():
    value = _run_python("import os\nos.environ.pop('TL_DISABLE_ANALYTICS', None)\nimport librispeech\n"
                        "import code_loader\nprint(os.environ.get('TL_DISABLE_ANALYTICS'))")
    assert value == "true"


def test_numba_cache_goes_to_a_temporary_folder_only_where_nothing_else_can_be_written(tmp_path, monkeypatch):
    """numba caches each librosa function beside its source file, else in the user's cache folder; where neither can
    be written it fails `import librosa` ("no locator available"). Only there the guard points NUMBA_CACHE_DIR at a
    folder of this user's in the temporary directory."""
    from librispeech import numba_cache

    monkeypatch.setenv("NUMBA_CACHE_DIR", "")  # unset for the guard; restored after the test
    package = tmp_path / "librosa"
    for folder in ("", "core", "util"):
        (package / folder).mkdir(parents=True, exist_ok=True)
        (package / folder / "a.py").write_text("")
    a_file = tmp_path / "file"
    a_file.write_text("")
    unwritable = a_file / ".cache" / "numba"  # under a file: no folder can be made there, not even by root
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    assert numba_cache.source_cache_folders(package) == [package / f / "__pycache__" for f in ("", "core", "util")]
    assert numba_cache.guard(package, unwritable, temporary) is None  # beside the sources
    assert numba_cache.guard(package, tmp_path / "home" / ".cache" / "numba", temporary) is None  # the home's
    (package / "core" / "__pycache__").write_text("")  # one source folder's cache cannot be made
    assert numba_cache.guard(package, tmp_path / "home" / ".cache" / "numba", temporary) is None
    chosen = numba_cache.guard(package, unwritable, temporary)
    assert chosen == os.environ["NUMBA_CACHE_DIR"] == str(temporary / f"librispeech-numba-cache-{os.getuid()}")
    assert oct(os.stat(chosen).st_mode & 0o777) == oct(0o700)
    assert numba_cache.fallback_folder(temporary) == Path(chosen)  # the same folder on the next run
    os.chmod(chosen, 0o777)  # a folder others can write into (numba unpickles its cache): not used
    other = numba_cache.fallback_folder(temporary)
    assert other != Path(chosen) and other.parent == temporary and oct(os.stat(other).st_mode & 0o777) == oct(0o700)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))  # the user's own choice is kept
    assert numba_cache.guard(package, unwritable, temporary) is None
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "mine")


def test_numba_s_user_cache_folder_is_named_as_numba_names_it(monkeypatch):
    from librispeech import numba_cache

    if sys.platform in ("win32", "darwin"):
        pytest.skip("the XDG folders are Linux's")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert numba_cache.user_cache_folder() == Path("/somewhere/numba")
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # numba takes "" as it is: the current folder
    assert numba_cache.user_cache_folder() == Path("numba")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert numba_cache.user_cache_folder() == Path("~/.cache/numba").expanduser()


def test_importing_the_package_leaves_numba_alone_where_its_cache_can_be_written():
    from librispeech import numba_cache

    if not numba_cache.numba_can_cache():
        pytest.skip("numba has no writable cache for librosa here: the case the guard is for")
    assert _run_python("import os\nos.environ.pop('NUMBA_CACHE_DIR', None)\nimport librispeech\n"
                       "print(os.environ.get('NUMBA_CACHE_DIR'))") == "None"
