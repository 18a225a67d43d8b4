"""The import arrows point one way (issue 13): inside ``search_space/`` every import a module
makes, at the top or inside a function, forms a graph without a cycle, and between the
packages every import points down ``search_space <- proxies <- results <- searchers``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "search_space"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names
                  if n.startswith("search_space.") and (PACKAGE / f"{n.split('.')[1]}.py").exists()}
    return found - {path.stem}


def test_search_space_has_no_import_cycle():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert graph["attention"] and "cells" not in graph["attention"]  # the old circle
    order, state = [], {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"import cycle: {' -> '.join([*path, node])}"
        state[node] = "open"
        for dep in sorted(graph[node]):
            visit(dep, [*path, node])
        state[node] = "done"
        order.append(node)

    for module in sorted(graph):
        visit(module, [])
    assert set(order) == set(graph)


def test_one_atomic_writer():
    """Every module writes files through search_space.files (issue 13: one atomic writer; the
    checkpoint writer adds its .prev link on top of the same temporary-file discipline)."""
    import re

    root = PACKAGE.parent
    for package in ("search_space", "proxies", "searchers", "results"):
        for path in (root / package).glob("*.py"):
            if path.name == "files.py" and package == "search_space":
                continue
            text = path.read_text()
            renames = len(re.findall(r"os\.replace\(|\.replace\(self\.path\)|tmp\.replace\(",
                                     text))
            allowed = 3 if (package, path.name) == ("searchers", "config.py") else 0
            assert renames <= allowed, f"{package}/{path.name} renames files itself"


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    from search_space.files import atomic_write, atomic_write_text

    target = atomic_write_text(tmp_path / "sub" / "a.txt", "old")

    def fail(fh):
        fh.write(b"half")
        raise OSError("disk full (simulated)")

    import pytest

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["a.txt"]


LAYERS = ("search_space", "proxies", "results", "searchers")
"""The packages from the bottom up: each may import only those before it."""


def _package_imports(path: Path, package: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of a project package in ``path``: top-level, inside
    functions, under ``TYPE_CHECKING``, and ``importlib.import_module("...")`` with a literal."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            names = [package if node.level else (node.module or "")]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            names = [node.args[0].value]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in LAYERS]
    return found


def test_packages_import_downward_only():
    """search_space at the bottom, then proxies, results, searchers at the top: a package
    imports only the packages below it, anywhere in a module (issue 13's layering)."""
    root = PACKAGE.parent
    upward = []
    for rank, package in enumerate(LAYERS):
        above = set(LAYERS[rank + 1:])
        for path in sorted((root / package).rglob("*.py")):
            upward += [f"{path.relative_to(root)}:{line} imports {module} ({package} sits below "
                       f"{module.split('.')[0]})"
                       for line, module in _package_imports(path, package)
                       if module.split(".")[0] in above]
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)
