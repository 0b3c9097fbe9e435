"""millpond's modules import each other without a cycle.

A cycle (the admin API's lifespan importing the server that built it, say) makes
import order matter and hides who depends on whom. This reads every module's
top-level imports (not those under ``if TYPE_CHECKING:`` or inside functions, which
run later) and fails naming one cycle, if there is any."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(src: Path, path: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def top_level_imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """The millpond modules ``path`` (module ``name``) imports when it is imported."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                visit(node.finalbody)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)

    visit(ast.parse(path.read_text(), str(path)).body)
    # Importing a.b runs a/__init__ first; a package importing its own submodules
    # (re-exports) is not a cycle between modules.
    return {m for m in found if m in modules and m != name and not name.startswith(m + ".")}


def import_cycle(src: Path) -> list[str] | None:
    """One cycle among the top-level imports of the ``millpond`` package under ``src``."""
    paths = sorted((src / "millpond").rglob("*.py"))
    modules = {module_name(src, p) for p in paths}
    graph = {module_name(src, p): top_level_imports(module_name(src, p), p, modules)
             for p in paths}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_no_import_cycles() -> None:
    cycle = import_cycle(SRC)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_check_sees_a_cycle(tmp_path: Path) -> None:
    """A module-level cycle is found; one closed only under TYPE_CHECKING is not."""
    pkg = tmp_path / "millpond"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from millpond import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                              "    from millpond import a\n")
    assert import_cycle(tmp_path) is None
    (pkg / "b.py").write_text("from .a import thing\n")
    assert set(import_cycle(tmp_path) or []) == {"millpond.a", "millpond.b"}
