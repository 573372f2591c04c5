"""Optional compiled hot-path modules, and a guard that never runs stale ones.

`make` compiles the modules in `HOT_MODULES` with mypyc (`tools/build_speedups.py`): the
same source, type-checked, as C extensions next to the `.py` files, which Python's import
system prefers. They are what every event goes through — validation, redaction, body
parsing, server-side preparation, the SQLite row codec and its derived tables — and compiled
they take about half the CPU (bench/README.md). Without a C compiler or mypy, nothing is
built and the `.py` files run.

The guard: when any hot module's source is newer than its compiled build (an edit since the
last `make`), or `LOGBEACON_PURE_PYTHON=1` is set, `install()` puts a finder first on
`sys.meta_path` that loads all of them from source. All or none, because mypyc compiles them
as one group whose modules call each other directly in C.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Final

__all__ = ["HOT_MODULES", "PURE_ENV", "compiled_modules", "install", "is_stale"]

# Dotted names; `tools/build_speedups.py` compiles exactly these (it reads this tuple).
HOT_MODULES: Final = (
    "logbeacon.event",
    "logbeacon.redact",
    "logbeacon.store._sqlite_codec",
    "logbeacon.server._prepare",
    "logbeacon.server.payload",
    "logbeacon.store._sqlite_derived",
)
PURE_ENV: Final = "LOGBEACON_PURE_PYTHON"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})  # docs/configuration.md's booleans

_ROOT: Final = Path(__file__).resolve().parent.parent  # the directory holding `logbeacon/`


def _source(root: Path, name: str) -> Path:
    return root.joinpath(*name.split(".")).with_suffix(".py")


def _builds(root: Path, name: str) -> list[Path]:
    source = _source(root, name)
    return [
        source.with_name(source.stem + suffix)
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if source.with_name(source.stem + suffix).exists()
    ]


def is_stale(root: Path, names: Sequence[str] = HOT_MODULES) -> bool:
    """Whether compiled builds exist under `root` that are older than some hot source."""
    builds = [build for name in names for build in _builds(root, name)]
    if not builds:
        return False
    try:
        newest_source = max(_source(root, name).stat().st_mtime for name in names)
        oldest_build = min(build.stat().st_mtime for build in builds)
    except OSError:
        return True  # a source or build vanished mid-check: trust the source
    return newest_source > oldest_build


class _SourceFinder:
    """Finds the hot modules' `.py` files, ahead of their compiled builds."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in HOT_MODULES:
            return None
        source = _source(self.root, fullname)
        if not source.exists():
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def install(root: Path = _ROOT) -> bool:
    """Load the hot modules from source when asked to or when their builds are stale.

    Returns whether the source finder was installed. Called once, first thing, by
    `logbeacon/__init__.py`, before any hot module is imported.
    """
    if os.environ.get(PURE_ENV, "").strip().lower() not in _TRUE and not is_stale(root):
        return False
    if not any(isinstance(f, _SourceFinder) and f.root == root for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder(root))
    return True


def compiled_modules() -> list[str]:
    """The hot modules that are loaded as compiled extensions right now."""
    return [
        name
        for name in HOT_MODULES
        if (module := sys.modules.get(name)) is not None
        and not str(getattr(module, "__file__", "")).endswith(".py")
    ]
