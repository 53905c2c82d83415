"""Where librosa's numba functions are cached, on a machine where numba would find nowhere.

librosa compiles some functions with numba's `cache=True`. numba caches each in the `__pycache__` folder beside its
source file, else in the user's cache folder (numba's `appdirs.user_cache_dir`: `$XDG_CACHE_HOME/numba`, default
`~/.cache/numba`; `~/Library/Caches/numba` on macOS; `%LOCALAPPDATA%\\numba\\Cache` on Windows). Where neither can
be written (a read-only image whose home is not writable), `import librosa` itself fails: "cannot cache function
...: no locator available". There, and only there, NUMBA_CACHE_DIR is pointed at a folder of this user's in the
temporary directory, before anything imports numba (which reads it once, at import). The checks only look: they
create nothing unless the fallback is needed.
"""
from __future__ import annotations

import importlib.util
import os
import stat
import sys
import tempfile
from pathlib import Path


def _writable(folder: Path) -> bool:
    """The folder, or the nearest existing folder above it where it does not exist yet, can be written."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK)
    return False


def user_cache_folder() -> Path:
    """numba's user-wide cache folder, as numba.misc.appdirs.user_cache_dir('numba', appauthor=False) names it."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", "~\\AppData\\Local")).expanduser() / "numba" / "Cache"
    if sys.platform == "darwin":
        return Path("~/Library/Caches").expanduser() / "numba"
    return Path(os.getenv("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))) / "numba"  # "" means the cwd, as numba


def source_cache_folders(package_folder: Path) -> list[Path]:
    """The `__pycache__` folder beside each folder of the package's source files, where numba caches first."""
    folders = []
    for folder, subfolders, files in os.walk(package_folder):
        subfolders[:] = [name for name in subfolders if name != "__pycache__"]
        if any(name.endswith(".py") for name in files):
            folders.append(Path(folder) / "__pycache__")
    return sorted(folders)


def numba_can_cache(package_folder: Path | None = None, user_cache: Path | None = None) -> bool:
    """numba finds a writable cache for every source file of the package (librosa's by default): beside it, or in the
    user's cache folder. True where the package is not installed."""
    if package_folder is None:
        spec = importlib.util.find_spec("librosa")  # finds the package without importing it
        if spec is None or spec.origin is None:
            return True
        package_folder = Path(spec.origin).parent
    return (_writable(user_cache or user_cache_folder())
            or all(_writable(folder) for folder in source_cache_folders(package_folder)))


def fallback_folder(temporary: Path | None = None) -> Path:
    """A folder of this user's alone in the temporary directory: the same one from run to run (so the cache is
    reused), unless another user made it or can write into it (numba unpickles what it finds there); then a new one."""
    folder = Path(temporary or tempfile.gettempdir()) / "librispeech-numba-cache"
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is not None:
        folder = folder.with_name(f"{folder.name}-{uid}")
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
        if stat.S_ISDIR(info.st_mode) and (uid is None or info.st_uid == uid) and not info.st_mode & 0o022:
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="librispeech-numba-cache-", dir=temporary))


def guard(package_folder: Path | None = None, user_cache: Path | None = None,
          temporary: Path | None = None) -> str | None:
    """Set NUMBA_CACHE_DIR where numba would have no writable cache for librosa; returns the folder set, if any.
    A NUMBA_CACHE_DIR already set is left as it is."""
    if os.environ.get("NUMBA_CACHE_DIR") or numba_can_cache(package_folder, user_cache):
        return None
    os.environ["NUMBA_CACHE_DIR"] = str(fallback_folder(temporary))
    return os.environ["NUMBA_CACHE_DIR"]
