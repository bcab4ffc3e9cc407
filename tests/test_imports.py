"""No module of ours imports, while it is being imported, one that imports it back, directly or round a longer loop.

Such a loop works only while every name crossing it is read at call time: the first `from orgs.x import NAME` (or a
module-level use) added anywhere on it fails with an ImportError or AttributeError that depends on which module
happened to be imported first, in production and not in a test, or the other way round. Imports inside functions
run later, when every module is whole, and do not count; nor do those under `if TYPE_CHECKING:`.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("opsion", "orgs", "insights")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imported_at_import_time(tree: ast.Module, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that `tree` imports as it runs: its top level and class bodies, not function bodies."""
    found = set()
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
            found.add(node.module)
            # `from orgs import services` imports the module orgs.services, not a name of the package.
            submodules = (f"{node.module}.{alias.name}" for alias in node.names)
            found.update(name for name in submodules if name in modules)
        pending.extend(ast.iter_child_nodes(node))
    return found


def _loop_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """The shortest chain of imports leading from `start` back to it, or None."""
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for imported in sorted(graph[path[-1]]):
            if imported == start:
                return [*path, start]
            if imported not in seen:
                seen.add(imported)
                paths.append([*path, imported])
    return None


def test_no_module_imports_one_that_imports_it_back():
    modules = _modules()
    graph = {name: _imported_at_import_time(ast.parse(path.read_text()), modules) for name, path in modules.items()}
    loops = {}  # each loop once, however many of its modules it is found from
    for name in sorted(graph):
        if (loop := _loop_from(name, graph)) and frozenset(loop) not in loops:
            loops[frozenset(loop)] = " → ".join(loop)

    assert not loops, "import loops:\n" + "\n".join(loops.values())


def test_it_sees_an_import_inside_a_class_or_an_if_but_not_one_inside_a_function():
    modules = dict.fromkeys(("orgs", "orgs.a", "orgs.b", "orgs.c", "orgs.d"), Path())
    source = """
from typing import TYPE_CHECKING
from orgs import a
if True:
    import orgs.b
class Thing:
    from orgs.c import NAME
def later():
    from orgs import d
if TYPE_CHECKING:
    from orgs import d
"""
    assert _imported_at_import_time(ast.parse(source), modules) == {"orgs", "orgs.a", "orgs.b", "orgs.c"}
