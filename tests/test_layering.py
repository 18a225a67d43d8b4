"""The import arrows inside ``search_space/`` point one way: every import a module makes,
at the top or inside a function, forms a graph without a cycle (issue 13)."""

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
