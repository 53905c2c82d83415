"""Where librosa's numba functions are cached, on a machine where numba would find nowhere.

librosa compiles some functions with numba's `cache=True`, which numba writes beside librosa's code, else in the
user's cache folder (`$XDG_CACHE_HOME/numba` or `~/.cache/numba`). Where neither can be written (a read-only image
whose home is not a folder of its own), `import librosa` itself fails: "cannot cache function ...: no locator
available". There, and only there, NUMBA_CACHE_DIR is pointed at a folder in the temporary directory, before
anything imports numba.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path


def _writable(folder: Path) -> bool:
    """The folder, or the nearest existing folder above it where it does not exist yet, can be written."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK)
    return False


def user_cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()) / "numba"


def fallback_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"librispeech-numba-cache-{os.getuid() if hasattr(os, 'getuid') else 0}"


def guard(package_folder: Path | None = None, user_cache: Path | None = None) -> str | None:
    """Set NUMBA_CACHE_DIR where numba would have no writable cache for librosa; returns the folder set, if any.
    A NUMBA_CACHE_DIR already set is left as it is."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    if package_folder is None:
        spec = importlib.util.find_spec("librosa")  # finds the package without importing it
        if spec is None or spec.origin is None:
            return None
        package_folder = Path(spec.origin).parent
    if _writable(package_folder) or _writable(user_cache or user_cache_folder()):
        return None
    os.environ["NUMBA_CACHE_DIR"] = str(fallback_folder())
    return os.environ["NUMBA_CACHE_DIR"]
