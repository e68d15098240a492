"""The embedding guide's examples (``docs/examples/*.py``) run, and the guide shows each one as
it is: an example that breaks, or drifts from the guide, fails here."""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import anyio
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))
GUIDE = DOCS / "embedding.md"
# In the guide: "<!-- example: examples/name.py -->" then a ```python block holding the file.
INCLUDED = re.compile(r"<!-- example: (examples/[\w.]+) -->\n```python\n(.*?)```\n", re.DOTALL)


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_examples() -> None:
    assert {path.name for path in EXAMPLES} >= {
        "authorization.py",
        "starlette_app.py",
        "fastapi_app.py",
        "custom_adapter.py",
        "python_api.py",
        "hooks_and_changefeed.py",
        "tenants.py",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_runs(path: Path) -> None:
    main = load(path).main
    if inspect.iscoroutinefunction(main):
        anyio.run(main)
    else:
        main()


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if "class Test" in p.read_text()], ids=lambda path: path.stem
)
def test_example_test_suites_pass(path: Path) -> None:
    """An example that ships tests (a contract suite run on a custom adapter) passes them."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=DOCS.parent,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout


def test_the_guide_shows_every_example_as_it_is() -> None:
    shown = dict(INCLUDED.findall(GUIDE.read_text()))
    assert sorted(shown) == sorted(f"examples/{path.name}" for path in EXAMPLES)
    for name, code in shown.items():
        assert code == (DOCS / name).read_text(), f"{name} in docs/embedding.md differs from the file"
