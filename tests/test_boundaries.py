"""Architecture rules: the core never imports an adapter, and only dicomweb_kit/web touches starlette."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "dicomweb_kit"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def offenders(banned: str, allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in CORE.rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(allowed):
            continue
        if any(name == banned or name.startswith(banned + ".") for name in imported_modules(path)):
            found.append(relative)
    return found


def test_core_never_imports_an_adapter() -> None:
    assert offenders("dicomweb_kit_adapters") == []


def test_only_the_web_layer_imports_starlette() -> None:
    assert offenders("starlette", allowed=("dicomweb_kit/web/", "dicomweb_kit/cli.py")) == []


def test_the_rule_would_catch_an_offender(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from dicomweb_kit_adapters.memory import MemoryIndex\n")
    assert "dicomweb_kit_adapters.memory" in imported_modules(bad)


@pytest.mark.skipif(
    shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(), reason="ruff is not installed"
)
def test_ruff_enforces_the_same_rule(tmp_path: Path) -> None:
    """ruff's TID251 (configured in pyproject.toml) flags an adapter import inside the core."""
    probe = CORE / "_boundary_probe.py"
    probe.write_text("from dicomweb_kit_adapters import memory\n\nprint(memory)\n")
    try:
        ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
        result = subprocess.run(
            [ruff, "check", "--select", "TID251", str(probe)], cwd=ROOT, capture_output=True, text=True
        )
    finally:
        probe.unlink()
    assert result.returncode != 0
    assert "TID251" in result.stdout
