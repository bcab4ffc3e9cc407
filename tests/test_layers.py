"""The core (`opsion/`) wires the apps together, and takes nothing from AI Insights but its routes and URLs (named by
string): what the API's core needs is the core's own, so `insights` can change without reaching into it."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "opsion"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_the_core_imports_nothing_from_insights():
    reaching = {
        f"{path.relative_to(CORE.parent)}: {module}"
        for path in CORE.rglob("*.py")
        for module in _imported_modules(path)
        if module == "insights" or module.startswith("insights.")
    }

    assert not reaching
