"""Compile logbeacon's hot-path modules with mypyc, in place (optional; `make` runs it).

    .venv/bin/python tools/build_speedups.py          # build (or rebuild) them
    .venv/bin/python tools/build_speedups.py --clean  # remove the builds: pure Python again

The modules are `logbeacon._compiled.HOT_MODULES`; the C extensions land next to their
`.py` files in `src/`, plus mypyc's shared runtime library in `src/` itself (all ignored by
git). A failed build — no C compiler, no mypy, a mypyc error — removes whatever it left and
exits 0 with a warning: logbeacon then runs the same modules as Python, only slower. At
import, `logbeacon._compiled` ignores builds older than their sources, so an edited module is
never shadowed by a stale build.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def hot_modules() -> tuple[str, ...]:
    """`HOT_MODULES`, read from its file without importing the package."""
    spec = importlib.util.spec_from_file_location("_compiled", SRC / "logbeacon" / "_compiled.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.HOT_MODULES)


def outputs() -> list[Path]:
    """Every file a build leaves in `src/`: the extensions and mypyc's runtime library."""
    found = list(SRC.glob("*__mypyc.*"))
    for name in hot_modules():
        source = SRC.joinpath(*name.split(".")).with_suffix(".py")
        found += [p for p in source.parent.glob(source.stem + ".*") if p.suffix in (".so", ".pyd")]
    return found


def clean() -> None:
    for path in outputs():
        path.unlink(missing_ok=True)


def build() -> bool:
    """Compile into a scratch directory, then move the results into `src/`."""
    sources = [str(Path(*name.split(".")).with_suffix(".py")) for name in hot_modules()]
    with tempfile.TemporaryDirectory(prefix="logbeacon-mypyc-") as tmp:
        work = Path(tmp)
        shutil.copytree(
            SRC / "logbeacon",
            work / "logbeacon",
            ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"),
        )
        env = {**os.environ, "MYPYC_OPT_LEVEL": "3"}
        result = subprocess.run(
            [sys.executable, "-m", "mypyc", *sources],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            print("logbeacon speedups: mypyc failed; running as pure Python.", file=sys.stderr)
            print("\n".join(tail), file=sys.stderr)
            return False
        clean()
        for built in work.glob("*__mypyc.*"):
            shutil.copy2(built, SRC / built.name)
        for source in sources:
            stem = Path(source)
            for built in (work / stem.parent).glob(stem.stem + ".*"):
                if built.suffix in (".so", ".pyd"):
                    shutil.copy2(built, SRC / stem.parent / built.name)
    # Newer than every source, so `logbeacon._compiled` trusts them.
    for path in outputs():
        path.touch()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    args = parser.parse_args(argv)
    if args.clean:
        clean()
        return 0
    try:
        import mypyc  # noqa: F401 - only checking that it is installed
    except ImportError:
        print("logbeacon speedups: mypy is not installed; running as pure Python.", file=sys.stderr)
        return 0
    if build():
        names = ", ".join(hot_modules())
        print(f"logbeacon speedups: compiled {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
