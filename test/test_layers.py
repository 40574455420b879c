"""The layer rules of DESIGN.md, read from the imports of every module (ast; nothing is imported):
- only `ros/` talks to ROS (rclpy, message packages, our generated `segmentation_ros.msg`);
- the library folders never import what is built on them (runtime, the pipeline, ros, train,
  tools);
- no import cycle among our modules at module level (imports inside functions are the way out of
  one, and are allowed).
The checker is tested on a small tree that breaks each rule, so that it is known to catch them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "segmentation_ros"

LIBRARY = ("ops", "models", "postprocess", "panoptic", "drivable", "structures", "tracking")
ABOVE_LIBRARY = ("runtime", "pipeline", "ros", "train", "tools")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every .py of `package` under `root` (the generated msg/ aside)."""
    base = root / package
    return {
        module_name(p, root): p
        for p in sorted(base.rglob("*.py"))
        if "msg" not in p.relative_to(base).parts[:1]
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for each import in the file. `from pkg import x`
    names pkg.x when that is one of our modules."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue  # annotations only: never executed
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    anchor = name.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    target = ".".join(anchor + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                submodules = [f"{target}.{a.name}" for a in child.names]
                submodules = [m for m in submodules if m in modules]
                # `from . import sibling` (or a package's `from . import its_module`) needs
                # nothing of the package being initialised; `from . import SomeName` does.
                inside = name == target or name.startswith(f"{target}.")
                if not (inside and len(submodules) == len(child.names)):
                    found.append((target, top))
                found.extend((m, top) for m in submodules)
            inner_top = top and not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            visit(child, inner_top)

    visit(ast.parse(path.read_text(), str(path)), True)
    return found


def talks_to_ros(target: str, package: str = PACKAGE) -> bool:
    top = target.split(".")[0]
    ours = target == f"{package}.msg" or target.startswith(f"{package}.msg.")
    return top == "rclpy" or top.endswith("_msgs") or ours


def layer_violations(root: Path, package: str = PACKAGE) -> list[str]:
    modules = read_modules(root, package)
    problems = []
    for name, path in modules.items():
        folder = name.split(".")[1] if "." in name else ""
        for target, _ in imports_of(name, path, modules):
            if talks_to_ros(target, package) and folder != "ros":
                problems.append(f"{name} imports {target}: only {package}.ros talks to ROS")
            if folder in LIBRARY:
                above = target.split(".")[1] if target.startswith(f"{package}.") else ""
                if above in ABOVE_LIBRARY:
                    problems.append(f"{name} imports {target}: the library ({folder}) is below it")
    return sorted(set(problems))


def import_cycles(root: Path, package: str = PACKAGE) -> list[list[str]]:
    """Strongly connected components (size > 1, or a module importing itself) of the graph of
    module-level imports among our modules (Tarjan's algorithm)."""
    modules = read_modules(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for target, top in imports_of(name, path, modules):
            if top and target in modules:
                targets.add(target)
        graph[name] = targets
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return cycles


def test_layers_hold():
    assert layer_violations(REPO) == []


def test_no_import_cycle_at_module_level():
    assert import_cycles(REPO) == []


def test_every_module_fits_in_a_head():
    too_long = {
        name: n
        for name, path in read_modules(REPO).items()
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert too_long == {}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    "module,text,expected",
    [
        ("models/bad.py", "import rclpy\n", "only segmentation_ros.ros talks to ROS"),
        ("drivable/bad.py", "def f():\n    from rclpy.node import Node\n", "talks to ROS"),
        ("panoptic/bad.py", "from sensor_msgs.msg import Image\n", "talks to ROS"),
        ("ops/bad.py", "from segmentation_ros.msg import ClassInfo\n", "talks to ROS"),
        ("ops/bad.py", "from segmentation_ros.runtime import backends\n", "library (ops)"),
        ("models/bad.py", "from ..pipeline import FrameResult\n", "library (models)"),
        ("postprocess/bad.py", "def f():\n    import segmentation_ros.ros.node\n", "library"),
    ],
)
def test_checker_catches_a_broken_layer(tmp_path, module, text, expected):
    root = _tree(tmp_path, {"__init__.py": "", module.split("/")[0] + "/__init__.py": ""})
    assert layer_violations(root) == []
    (root / PACKAGE / module).write_text(text)
    problems = layer_violations(root)
    assert len(problems) == 1 and expected in problems[0], problems


def test_checker_allows_ros_in_ros_and_library_below(tmp_path):
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "ros/__init__.py": "",
            "ros/node.py": "import rclpy\nfrom segmentation_ros.msg import ClassInfo\n",
            "pipeline/__init__.py": "from segmentation_ros.models import yolact\n",
            "models/__init__.py": "",
            "models/yolact.py": "import torch\n",
        },
    )
    assert layer_violations(root) == []


def test_checker_finds_cycles_but_not_through_function_imports(tmp_path):
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "runtime/__init__.py": "",
            "runtime/a.py": "from segmentation_ros.runtime import b\n",
            "runtime/b.py": "def f():\n    from segmentation_ros.runtime import a\n",
        },
    )
    assert import_cycles(root) == []
    (root / PACKAGE / "runtime/b.py").write_text("from . import a\n")
    assert import_cycles(root) == [["segmentation_ros.runtime.a", "segmentation_ros.runtime.b"]]


def test_checker_counts_a_name_taken_from_the_package_being_initialised(tmp_path):
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "drivable/__init__.py": "from .camera import CameraModel\nfrom .grid import Grid\n",
            "drivable/camera.py": "from . import grid\n",
            "drivable/grid.py": "class Grid: ...\n",
        },
    )
    assert import_cycles(root) == []
    (root / PACKAGE / "drivable/camera.py").write_text("from . import Grid\n")
    assert import_cycles(root) == [
        ["segmentation_ros.drivable", "segmentation_ros.drivable.camera"]
    ]
