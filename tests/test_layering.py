"""The import arrows point one way (issues 13 and 25): inside each of the four packages, the
imports its modules make (at the top or inside a function, sub-packages included) form a graph
without a cycle, and so do its sub-packages (``proxies.data``, ``proxies.measure``, ...); between
the packages every import points down ``search_space <- proxies <- results <- searchers``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "search_space"
LAYERS = ("search_space", "proxies", "results", "searchers")
"""The packages from the bottom up: each may import only those before it."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: str) -> dict[str, Path]:
    """Every module of ``package``, sub-packages included, by dotted name."""
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports, at the top or inside a function: for
    ``from a.b import c`` the module ``a.b.c`` where it exists, else ``a.b``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {n for n in found if n in known} - {_module_name(path)}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        if state.get(node) == "done":
            return None
        if state.get(node) == "open":
            return [*path[path.index(node):], node]
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            cycle = visit(dep, [*path, node])
            if cycle:
                return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        cycle = visit(node, [])
        if cycle:
            return cycle
    return None


def _graph(package: str) -> dict[str, set[str]]:
    modules = _modules(package)
    known = set(modules)
    # a package's __init__ is left out: importing a.b.c runs a/b/__init__ first, which is not
    # an arrow of the code's own
    return {name: {d for d in _imports(path, known) if modules[d].name != "__init__.py"}
            for name, path in modules.items() if path.name != "__init__.py"}


def _subpackage(module: str) -> str:
    """``proxies.measure.latency`` -> ``proxies.measure``; a top-level module is its own."""
    parts = module.split(".")
    return ".".join(parts[:2])


@pytest.mark.parametrize("package", LAYERS)
def test_no_import_cycle_inside_a_package(package):
    graph = _graph(package)
    if package == "search_space":
        assert graph["search_space.attention"]
        assert "search_space.cells" not in graph["search_space.attention"]  # the old circle
    elif package == "proxies":
        assert "proxies.measure.memory" not in graph["proxies.measure.runtime"]  # the old circle
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("package", LAYERS)
def test_no_import_cycle_between_sub_packages(package):
    """The families of a package (its sub-packages and top-level modules) import each other
    one way too: e.g. ``proxies.profile -> proxies.protocol -> proxies.measure -> proxies.export``,
    never back."""
    arrows: dict[str, set[str]] = {}
    for module, deps in _graph(package).items():
        arrows.setdefault(_subpackage(module), set()).update(
            _subpackage(d) for d in deps if _subpackage(d) != _subpackage(module))
    cycle = _find_cycle(arrows)
    assert cycle is None, "sub-packages import each other in a circle: " + " -> ".join(cycle or [])


def test_the_checks_see_sub_packages_and_cycles():
    """The graphs reach into sub-packages, and a made-up circle is found (so the two tests above
    can fail)."""
    graph = _graph("proxies")
    assert "proxies.measure.latency" in graph and "proxies.measure.settings" in graph[
        "proxies.measure.latency"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_commands_are_thin_and_alone_touch_sys_path():
    """A command file is a thin entry point (issue 25): ``sys.path.insert`` appears only in the
    script commands beside the packages, each under 40 lines, calling one ``main``."""
    scripts = {"searchers/darts.py", "searchers/optuna_search.py", "searchers/ray_tune.py",
               "searchers/retrain.py", "searchers/pipeline.py", "searchers/train_supernet.py"}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if "sys.path.insert" in path.read_text():
                assert rel in scripts, f"{rel} edits sys.path; only the thin command files may"
    for rel in scripts:
        text = (ROOT / rel).read_text()
        assert len(text.splitlines()) < 40 and "import main" in text, f"{rel} is not thin"

def test_one_atomic_writer():
    """Every module writes files through search_space.files (issue 13: one atomic writer; the
    checkpoint writer keeps its .prev link through the writer's before_replace hook)."""
    import re

    root = PACKAGE.parent
    for package in ("search_space", "proxies", "searchers", "results"):
        for path in (root / package).rglob("*.py"):
            if path == root / "search_space" / "files.py":
                continue
            text = path.read_text()
            renames = len(re.findall(r"os\.replace\(|\.replace\(self\.path\)|tmp\.replace\(",
                                     text))
            # the checkpoint's before_replace hook renames its .prev hard link into place
            allowed = 1 if path == root / "searchers" / "common" / "checkpoints.py" else 0
            assert renames <= allowed, f"{path.relative_to(root)} renames files itself"


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
