"""The tests' layout: shared code from tests/support, fixtures from conftest through pytest."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports, and every name it imports from one, as dotted paths."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # A test module is in the tests package: `from . import x` means `tests.x`.
            module = "tests" if node.level == 1 else ""
            module = ".".join(part for part in (module, node.module or "") if part)
            found.append(module)
            found += [f"{module}.{alias.name}" for alias in node.names]
    return found


def forbidden(module: str) -> bool:
    """conftest and test modules are pytest's to load; nothing imports them."""
    parts = module.split(".")
    return (
        parts[0] == "tests"
        and len(parts) > 1
        and (parts[1] == "conftest" or parts[1].startswith("test_"))
    )


def test_no_test_module_imports_conftest_or_another_test_module() -> None:
    offenders = {
        path.name: sorted({m for m in imported_modules(path) if forbidden(m)})
        for path in sorted(TESTS.glob("test_*.py"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_shared_code_imports_no_test_module_either() -> None:
    for path in sorted((TESTS / "support").glob("*.py")):
        assert [m for m in imported_modules(path) if forbidden(m)] == [], path.name


def test_the_check_sees_each_form_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import tests.conftest\n"
        "from tests.test_auth import mint\n"
        "from tests import test_cache\n"
        "from . import conftest\n"
        "from .test_fuzz import x\n"
        "from tests.support.gateway import Gateway\n"
    )
    found = sorted({m for m in imported_modules(sample) if forbidden(m)})
    assert found == [
        "tests.conftest",
        "tests.test_auth",
        "tests.test_auth.mint",
        "tests.test_cache",
        "tests.test_fuzz",
        "tests.test_fuzz.x",
    ]
