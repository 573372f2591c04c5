"""The optional mypyc builds of the hot modules (`logbeacon/_compiled.py`).

`make` compiles them; these tests check the guard that keeps a stale build from ever
shadowing its source, the pure-Python switch, and that a fresh build is what gets imported.
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from logbeacon import _compiled

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _tree(root: Path, *, build_age: float, source_age: float) -> None:
    """Sources and builds of every hot module under `root`, with the given mtimes."""
    for name in _compiled.HOT_MODULES:
        source = root.joinpath(*name.split(".")).with_suffix(".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")
        build = source.with_name(source.stem + SUFFIX)
        build.write_bytes(b"")
        os.utime(source, (source_age, source_age))
        os.utime(build, (build_age, build_age))


def test_the_makefile_compiles_exactly_the_hot_modules() -> None:
    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"^HOT := (.*?)(?<!\\)\n", makefile, re.MULTILINE | re.DOTALL)
    assert listed is not None
    paths = listed.group(1).replace("\\\n", " ").split()
    names = tuple(p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in paths)
    assert _compiled.HOT_MODULES == names


def test_no_builds_is_not_stale(tmp_path: Path) -> None:
    assert not _compiled.is_stale(tmp_path)


def test_builds_newer_than_their_sources_are_used(tmp_path: Path) -> None:
    _tree(tmp_path, build_age=2_000_000_000, source_age=1_000_000_000)
    assert not _compiled.is_stale(tmp_path)


def test_one_edited_source_makes_the_whole_group_stale(tmp_path: Path) -> None:
    _tree(tmp_path, build_age=2_000_000_000, source_age=1_000_000_000)
    edited = tmp_path / "logbeacon" / "redact.py"
    os.utime(edited, (3_000_000_000, 3_000_000_000))
    assert _compiled.is_stale(tmp_path)


def test_a_stale_group_is_loaded_from_source(tmp_path: Path) -> None:
    _tree(tmp_path, build_age=1_000_000_000, source_age=2_000_000_000)
    before = list(sys.meta_path)
    try:
        assert _compiled.install(tmp_path)
        (finder,) = [f for f in sys.meta_path if getattr(f, "root", None) == tmp_path]
        spec = finder.find_spec("logbeacon.event", None)  # type: ignore[call-arg]
        assert spec is not None
        assert tmp_path / "logbeacon" / "event.py" == Path(str(spec.origin))
        assert finder.find_spec("logbeacon.context", None) is None  # type: ignore[call-arg]
    finally:
        sys.meta_path[:] = before


def _imported_files(env: dict[str, str]) -> list[str]:
    code = (
        "import logbeacon, importlib\n"
        "for name in logbeacon._compiled.HOT_MODULES:\n"
        "    print(importlib.import_module(name).__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.split()


def test_pure_python_switch_loads_every_hot_module_from_source() -> None:
    files = _imported_files({**os.environ, _compiled.PURE_ENV: "1"})
    assert len(_compiled.HOT_MODULES) == len(files)
    assert all(f.endswith(".py") for f in files)


def test_fresh_builds_are_what_gets_imported() -> None:
    sources = [SRC.joinpath(*n.split(".")).with_suffix(".py") for n in _compiled.HOT_MODULES]
    built = [s.with_name(s.stem + SUFFIX) for s in sources]
    if not all(b.exists() for b in built) or _compiled.is_stale(SRC):
        pytest.skip("no fresh compiled build here (`make` builds one when it can)")
    env = {k: v for k, v in os.environ.items() if k != _compiled.PURE_ENV}
    files = _imported_files(env)
    assert [str(b) for b in built] == files
