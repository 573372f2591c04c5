"""The docs stay honest: the CLI reference, the configuration reference and runnable examples
are checked against the code (STYLE.md 16)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logbeacon.sdk.config import SETTINGS
from logbeacon.server._live import _TAIL_ENV, TailSettings
from logbeacon.server.settings import ENV_VARS, Settings
from tests.conftest import _ENV_ALIASES as SEED_ALIASES  # DESIGN.md §2/§4
from tests.helpers import cli_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
RUNNABLE_MARKER = "<!-- runnable -->"
_QUOTED_VARIABLE = re.compile(r"""["'](LOGBEACON_[A-Z0-9_]*[A-Z0-9])["']""")
_CODE_SPAN = re.compile(r"`([^`]+)`")


# --------------------------------------------------------------------------- helpers


def _sections(path: Path) -> dict[str, str]:
    """Level-2 sections of a Markdown file by the first word of their heading."""
    parts = re.split(r"^## ", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {part.split(maxsplit=1)[0].rstrip(":"): part for part in parts[1:]}


def _tables(text: str) -> Iterator[list[dict[str, str]]]:
    """Each Markdown table as a list of rows keyed by the header's cells."""
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) > 2:
            split = [
                [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]]
                for row in block
            ]
            header = split[0]
            yield [dict(zip(header, row, strict=True)) for row in split[2:]]
        block = []


def _row(
    section: str, *, environment: str | None = None, argument: str | None = None
) -> dict[str, str]:
    for table in _tables(section):
        for row in table:
            if environment is not None:
                spans = _CODE_SPAN.findall(row.get("environment", ""))
                if spans[:1] == [environment]:
                    return row
            elif _CODE_SPAN.findall(row.get("argument", ""))[:1] == [argument]:
                return row
    raise AssertionError(f"no row for {environment or argument} in the reference")


def _shown(value: object) -> str | None:
    """How a default is written in the reference (None: the cell starts with "none")."""
    if value is None or value == ():
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_default(row: dict[str, str], value: object, what: str) -> None:
    cell = row["default"]
    shown = _shown(value)
    if shown is None:
        assert cell.startswith("none"), f"{what}: the code's default is none, docs say {cell!r}"
    else:
        assert f"`{shown}`" in cell, f"{what}: the code's default is {shown!r}, docs say {cell!r}"


def _cli_variables() -> set[str]:
    names: set[str] = set()
    for _, command in cli_reference.commands():
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if envvar:
                names.update([envvar] if isinstance(envvar, str) else envvar)
    return names


def _variables_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "src").rglob("*.py"):
        names.update(_QUOTED_VARIABLE.findall(path.read_text(encoding="utf-8")))
    for setting in SETTINGS:
        names.update(setting.env)
    for variables in ENV_VARS.values():
        names.update(variables)
    names.update(_TAIL_ENV.values())
    return names | _cli_variables()


def _runnable_blocks() -> Iterator[Any]:
    for path in sorted([ROOT / "README.md", *DOCS.glob("*.md")]):
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            if line.strip() != RUNNABLE_MARKER:
                continue
            fence = lines[index + 1].strip() if index + 1 < len(lines) else ""
            assert "```python" == fence, f"{path.name}:{index + 1}: marker not before ```python"
            end = lines.index("```", index + 2)
            code = "\n".join(lines[index + 2 : end]) + "\n"
            yield pytest.param(code, id=f"{path.name}:{index + 3}")


# --------------------------------------------------------------------------- CLI


def test_cli_reference_is_generated_from_the_typer_app() -> None:
    """docs/cli.md lists every command, argument, option, variable and default of the app."""
    _, generated = cli_reference.split_document(cli_reference.CLI_DOC.read_text("utf-8"))
    assert cli_reference.render() == generated, (
        "docs/cli.md is out of date: run `.venv/bin/python -m tests.helpers.cli_reference`"
    )


def test_every_command_has_a_line_in_the_cli_overview() -> None:
    """Each top-level command is named in the overview table above the generated reference."""
    head, _ = cli_reference.split_document(cli_reference.CLI_DOC.read_text("utf-8"))
    top_level = {path[1] for path, _ in cli_reference.commands() if len(path) == 2}
    named = {m.split()[1] for m in _CODE_SPAN.findall(head) if m.startswith("logbeacon ")}
    assert set() == top_level - named


# --------------------------------------------------------------------------- configuration


def test_every_environment_variable_read_by_the_code_is_documented() -> None:
    """A variable the code reads (by name in src, or in a settings registry) is in
    docs/configuration.md."""
    variables = _variables_read_by_the_code()
    assert len(variables) > 40  # the scan itself works
    assert set() == set(SEED_ALIASES) - variables  # the seed aliases are really read
    documented = set(_CODE_SPAN.findall(CONFIGURATION.read_text(encoding="utf-8")))
    assert set() == variables - documented


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_sdk_defaults_match_the_reference(setting: Any) -> None:
    """Each `configure()` setting's row shows the code's default."""
    section = _sections(CONFIGURATION)["SDK"]
    if setting.env:
        row = _row(section, environment=setting.env[0])
    else:
        row = _row(section, argument=setting.name)
    if isinstance(setting.default, bytes):  # the user-id key: described, not printed
        assert "key" in row["default"]
        return
    _check_default(row, setting.default, setting.name)


@pytest.mark.parametrize("name", sorted(ENV_VARS))
def test_server_defaults_match_the_reference(name: str) -> None:
    """Each server setting's row lists its variables in order and shows the code's default."""
    row = _row(_sections(CONFIGURATION)["Server"], environment=ENV_VARS[name][0])
    assert list(ENV_VARS[name]) == _CODE_SPAN.findall(row["environment"])
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    _check_default(row, defaults[name], name)


@pytest.mark.parametrize("name", sorted(_TAIL_ENV))
def test_live_tail_defaults_match_the_reference(name: str) -> None:
    """Each live-tail limit's row shows the code's default."""
    row = _row(_sections(CONFIGURATION)["Server"], environment=_TAIL_ENV[name])
    defaults = {f.name: f.default for f in dataclasses.fields(TailSettings)}
    _check_default(row, defaults[name], name)


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_every_server_flag_is_in_the_configuration_reference(command: str) -> None:
    """Every flag of `serve` and `demo` has a row in its section of the reference."""
    section = _sections(CONFIGURATION)["Server" if command == "serve" else "Demo"]
    (cmd,) = [c for path, c in cli_reference.commands() if path == ["logbeacon", command]]
    flags = {opt for p in cmd.params for opt in p.opts if opt.startswith("--")}
    rows = [row for table in _tables(section) for row in table]
    documented = {span for row in rows for span in _CODE_SPAN.findall(row.get("flag", ""))}
    assert set() == flags - documented


# --------------------------------------------------------------------------- examples


RUNNABLE = list(_runnable_blocks())


def test_the_guides_have_runnable_examples() -> None:
    """Enough examples are marked runnable that the check below means something."""
    assert len(RUNNABLE) >= 8


@pytest.mark.parametrize("code", RUNNABLE)
def test_runnable_example_runs(code: str, tmp_path: Path) -> None:
    """A code block marked `<!-- runnable -->` runs to completion in a fresh interpreter."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == proc.returncode, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
