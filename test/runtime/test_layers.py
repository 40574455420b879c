"""The runtime's module structure: no import cycle at module level (read with `ast`, not by
importing), no module over 500 lines, the names module torch-free, and the public paths other
packages use still there."""

import ast
from pathlib import Path

import segmentation_ros.runtime as runtime

ROOT = Path(runtime.__file__).parent
PACKAGE = "segmentation_ros.runtime"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((PACKAGE, *parts))] = path
    return modules


def _module_level_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Runtime modules imported at module level (imports inside functions run later, when the
    modules are all loaded, and are not what makes a cycle fail)."""
    found = set()
    tree = ast.parse(path.read_text())
    statements = [s for s in tree.body if not isinstance(s, ast.FunctionDef | ast.ClassDef)]
    for statement in statements:
        for node in ast.walk(statement):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n in modules}
    return found


def test_no_import_cycle_at_module_level():
    modules = _modules()
    graph = {name: _module_level_imports(path, modules) for name, path in modules.items()}
    # A package's __init__ runs before its submodules: importing a submodule imports the
    # package first, so count that edge too.
    for name in modules:
        parent = name.rsplit(".", 1)[0]
        if parent in modules and parent != PACKAGE:
            graph[name].add(parent)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for other in sorted(graph[name]):
            if other == name:
                continue
            assert state.get(other) != 1, " -> ".join(stack[stack.index(other) :] + [other])
            if other not in state:
                visit(other)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert len(graph) >= 12  # the walk saw the modules


def test_modules_fit_in_a_head():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert max(sizes.values()) <= 500, {k: v for k, v in sizes.items() if v > 500}


def test_names_module_imports_nothing_of_ours_or_torch():
    tree = ast.parse((ROOT / "names.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def test_public_paths_are_kept():
    from segmentation_ros.runtime.backends import BackendUnavailable, build_backend
    from segmentation_ros.runtime.base import BackendUnavailable as base_error

    assert BackendUnavailable is base_error and callable(build_backend)
