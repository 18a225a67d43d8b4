"""The import arrows point one way (issue 13): inside ``search_space`` and inside ``proxies``
the imports the modules make, at the top or inside a function, form a graph without a cycle;
between the packages every import points down
``search_space <- proxies <- results <- searchers``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "search_space"


def _imports(path: Path) -> set[str]:
    """The modules of ``path``'s own package that it imports (at the top or in a function)."""
    package = path.parent
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith(f"{package.name}.")
                  and (package / f"{n.split('.')[1]}.py").exists()}
    return found - {path.stem}


@pytest.mark.parametrize("package", ["search_space", "proxies"])
def test_no_import_cycle_inside_the_lower_packages(package):
    folder = PACKAGE.parent / package
    graph = {p.stem: _imports(p) for p in folder.glob("*.py") if p.stem != "__init__"}
    if package == "search_space":
        assert graph["attention"] and "cells" not in graph["attention"]  # the old circle
    else:
        assert "memory" not in graph["runtime"]  # the old runtime <-> memory circle
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
    checkpoint writer keeps its .prev link through the writer's before_replace hook)."""
    import re

    root = PACKAGE.parent
    for package in ("search_space", "proxies", "searchers", "results"):
        for path in (root / package).glob("*.py"):
            if path.name == "files.py" and package == "search_space":
                continue
            text = path.read_text()
            renames = len(re.findall(r"os\.replace\(|\.replace\(self\.path\)|tmp\.replace\(",
                                     text))
            # the checkpoint's before_replace hook renames its .prev hard link into place
            allowed = 1 if (package, path.name) == ("searchers", "config.py") else 0
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
