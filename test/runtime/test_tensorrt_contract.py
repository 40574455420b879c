"""Our calls into torch-tensorrt and NVIDIA ModelOpt, checked against their pinned sources.

Neither imports without TensorRT and a GPU, so a mistake in how we call them (a keyword that
a release removed, one that an entry point's **kwargs swallows silently) shows only on a GPU
machine, if ever: an fp16 engine that is quietly fp32 raises nothing. Their wheels install here
with --no-deps (scripts/setup.sh: requirements-contracts.txt into <venv>/contract-sources);
these tests parse the sources with `ast`, import nothing from them, and check:
- every name we import from them exists there, every attribute we read exists;
- every call: each keyword we pass (literal, or expanded from our settings for every precision
  and batch profile) is a named parameter, or a key the callee reads from its **kwargs;
- the serialized-engine converter forwards each compilation setting we pass into its
  CompilationSettings (it builds them from a fixed list; the rest is dropped), and the settings
  we pass are CompilationSettings fields;
- TensorRT networks are strongly typed there, so the precision our graph carries is the
  engine's (test_tensorrt.py checks that the graph carries it).
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
from functools import cache
from pathlib import Path

import pytest

from segmentation_ros.runtime.names import PRECISIONS
from segmentation_ros.runtime.tensorrt import build, plugins, run, status

#: distribution -> (top-level package, pinned version); requirements-contracts.txt pins them.
PINNED = {"torch_tensorrt": ("torch_tensorrt", "2.14.0"), "nvidia_modelopt": ("modelopt", "0.47.0")}
#: Our modules that call into them.
OUR_MODULES = [status, plugins, build, run]
CONVERTER = "torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine"


def contract_sources() -> Path:
    return Path(os.environ.get("SEGROS_CONTRACT_SOURCES", Path(sys.prefix) / "contract-sources"))


@cache
def package_root(package: str) -> Path:
    """The pinned sources of `package` (fails, saying how to get them, when absent)."""
    root = contract_sources()
    (distribution,) = [d for d, (p, _) in PINNED.items() if p == package]
    version = PINNED[distribution][1]
    metadata = root / f"{distribution}-{version}.dist-info" / "METADATA"
    assert metadata.is_file() and (root / package).is_dir(), (
        f"{distribution} {version} sources missing under {root}: run scripts/setup.sh (it "
        f"installs requirements-contracts.txt there with pip --no-deps)"
    )
    return root / package


# --- a small resolver: dotted names -> definitions in the sources -----------------------------


@cache
def _module_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _module_file(dotted: str) -> Path | None:
    top, *rest = dotted.split(".")
    base = package_root(top).joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _absolute(module_dotted: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module
    parts = module_dotted.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def resolve(dotted: str, _depth: int = 0) -> ast.AST | str:
    """The definition (FunctionDef / ClassDef / Assign / AnnAssign) of `dotted` in the pinned
    sources, or "module" for a module; AssertionError when it does not exist."""
    assert _depth < 20, f"import cycle resolving {dotted}"
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        path = _module_file(module)
        if path is not None:
            break
    else:
        raise AssertionError(f"{dotted}: no such module in the pinned sources")
    rest = parts[cut:]
    if not rest:
        return "module"
    name, tail = rest[0], rest[1:]
    tree, is_package = _module_tree(path), path.name == "__init__.py"
    found = None
    for node in ast.walk(tree):  # module level, and inside `if`/`try` blocks there
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
            if node in tree.body or not found:
                found = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) and not found:
                found = node
        elif isinstance(node, ast.ImportFrom) and found is None:
            source = _absolute(module, node, is_package)
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    found = f"{source}.{alias.name}"
                elif alias.name == "*":
                    try:
                        found = (
                            f"{source}.{name}" if resolve(f"{source}.{name}", _depth + 1) else None
                        )
                    except AssertionError:
                        pass
    if found is None and _module_file(f"{module}.{name}") is not None:
        found = f"{module}.{name}"
    assert found is not None, f"{dotted}: {name!r} is not defined in {module}"
    if isinstance(found, str):
        return resolve(".".join([found, *tail]), _depth + 1)
    assert not tail or isinstance(found, ast.ClassDef), f"{dotted}: cannot look inside {name}"
    if tail:
        return resolve_member(found, tail[0])
    return found


def resolve_member(cls: ast.ClassDef, name: str) -> ast.AST:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"class {cls.name} has no {name}")


def accepted_keywords(definition: ast.AST) -> tuple[set[str], bool, set[str]]:
    """(named parameters, has **kwargs, keys its body reads from **kwargs) of a function or
    a class's __init__."""
    if isinstance(definition, ast.ClassDef):
        definition = resolve_member(definition, "__init__")
    assert isinstance(definition, ast.FunctionDef), f"{ast.dump(definition)[:80]} is not callable"
    args = definition.args
    named = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    kwargs = args.kwarg.arg if args.kwarg else None
    read = _kwargs_keys(definition, kwargs) if kwargs else set()
    return named, kwargs is not None, read


def _kwargs_keys(function: ast.FunctionDef, kwargs: str) -> set[str]:
    """String keys a body reads from its **kwargs: kwargs["k"], kwargs.get("k"), "k" in kwargs,
    any(k in kwargs for k in ["a", "b"])."""
    keys = set()

    def is_kwargs(node):
        return isinstance(node, ast.Name) and node.id == kwargs

    for node in ast.walk(function):
        if isinstance(node, ast.Subscript) and is_kwargs(node.value):
            if isinstance(node.slice, ast.Constant):
                keys.add(node.slice.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if is_kwargs(node.func.value) and node.args and isinstance(node.args[0], ast.Constant):
                keys.add(node.args[0].value)
        elif isinstance(node, ast.Compare) and any(is_kwargs(c) for c in node.comparators):
            if isinstance(node.left, ast.Constant):
                keys.add(node.left.value)
            else:  # `k in kwargs for k in [...]`: the list's strings
                for parent in ast.walk(function):
                    if isinstance(parent, ast.comprehension) and isinstance(
                        parent.iter, ast.List | ast.Tuple
                    ):
                        keys |= {e.value for e in parent.iter.elts if isinstance(e, ast.Constant)}
    return {k for k in keys if isinstance(k, str)}


# --- what we call: our modules' sources --------------------------------------------------------

#: Our functions whose result we pass as **keywords, and sample calls covering every case.
EXPANSIONS = {
    "_engine_settings": lambda: [
        build._engine_settings(p, workspace_bytes=1 << 20) for p in PRECISIONS
    ],
    "_input_spec": lambda: [
        build._input_spec((64, 96), (1, 1, 1)),
        build._input_spec((64, 96), (1, 2, 4)),
    ],
}
UPSTREAM = ("torch_tensorrt", "modelopt")


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


class Use:
    """One use of an upstream name in our code: where, what, and for calls the keywords."""

    def __init__(self, where: str, target: str, call: ast.Call | None, keywords: set[str]):
        self.where, self.target, self.call, self.keywords = where, target, call, keywords

    def __repr__(self) -> str:
        return f"{self.where}: {self.target}"


def _aliases(function: ast.FunctionDef) -> dict[str, str]:
    aliases = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in UPSTREAM:
                    aliases[a.asname or a.name.split(".")[0]] = (
                        a.name if a.asname else a.name.split(".")[0]
                    )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UPSTREAM:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(function):  # convert = torch_tensorrt.dynamo.convert_...
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name, value = _dotted(node.targets[0]), _dotted(node.value)
            if name and value and value.split(".")[0] in aliases:
                aliases[name] = _expand(value, aliases)
    return aliases


def _expand(dotted: str, aliases: dict[str, str]) -> str:
    head, _, tail = dotted.partition(".")
    return aliases[head] + (f".{tail}" if tail else "")


def _starstar_keywords(expr: ast.AST, function: ast.FunctionDef) -> set[str]:
    """The keywords a `**expr` passes: our settings functions expanded for every case, a name
    assigned from one of them or from dict(...), plus keys it is given later (x["k"] = ...)."""
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        assert expr.func.id in EXPANSIONS, f"cannot see what **{expr.func.id}(...) passes"
        return set().union(*(set(d) for d in EXPANSIONS[expr.func.id]()))
    assert isinstance(expr, ast.Name), f"cannot see what **{ast.unparse(expr)} passes"
    keys: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and any(_dotted(t) == expr.id for t in node.targets):
            value = node.value
            if isinstance(value, ast.Call) and _dotted(value.func) == "dict":
                keys |= {k.arg for k in value.keywords if k.arg}
                for k in value.keywords:
                    if k.arg is None:
                        keys |= _starstar_keywords(k.value, function)
            else:
                keys |= _starstar_keywords(value, function)
        elif isinstance(node, ast.Assign):  # settings["key"] = ...
            for t in node.targets:
                if isinstance(t, ast.Subscript) and _dotted(t.value) == expr.id:
                    keys.add(t.slice.value)
    return keys


def upstream_uses() -> list[Use]:
    """Every use of torch_tensorrt / modelopt names in our modules (imports, attributes,
    calls), found by parsing our sources."""
    uses = []
    for module in OUR_MODULES:
        tree = ast.parse(inspect.getsource(module))
        for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            aliases = _aliases(function)
            where = f"{module.__name__}.{function.name}"
            for target in aliases.values():
                uses.append(Use(where, target, None, set()))
            calls = {id(n.func): n for n in ast.walk(function) if isinstance(n, ast.Call)}
            for node in ast.walk(function):
                dotted = _dotted(node) if isinstance(node, ast.Attribute | ast.Name) else None
                if not dotted or dotted.split(".")[0] not in aliases:
                    continue
                if isinstance(node, ast.Name) and id(node) not in calls:
                    continue
                call = calls.get(id(node))
                keywords = set()
                if call is not None:
                    for k in call.keywords:
                        keywords |= {k.arg} if k.arg else _starstar_keywords(k.value, function)
                uses.append(Use(where, _expand(dotted, aliases), call, keywords))
    return uses


def _uses_of(target: str) -> list[Use]:
    return [u for u in upstream_uses() if u.target == target and u.call is not None]


def test_pinned_sources_are_the_pinned_versions():
    for distribution, (package, version) in PINNED.items():
        metadata = package_root(package).parent / f"{distribution}-{version}.dist-info" / "METADATA"
        assert f"\nVersion: {version}\n" in metadata.read_text()


def test_every_name_we_use_exists_upstream():
    uses = upstream_uses()
    targets = {u.target.split(".")[0] for u in uses}
    assert targets == {"torch_tensorrt", "modelopt"}  # the scan sees both
    problems = []
    for use in uses:
        try:
            resolve(use.target)
        except AssertionError as error:
            # An attribute of an upstream object (ENABLED_FEATURES.qdp_plugin): checked below.
            if "cannot look inside" not in str(error):
                problems.append(f"{use}: {error}")
    assert not problems, "\n".join(problems)


def test_the_feature_flag_we_read_exists():
    """torch_tensorrt._features.ENABLED_FEATURES is a FeatureSet namedtuple; we read qdp_plugin."""
    feature_set = resolve("torch_tensorrt._features.FeatureSet")
    fields = {n.value for n in ast.walk(feature_set) if isinstance(n, ast.Constant)}
    read = {u.target.rsplit(".", 1)[1] for u in upstream_uses() if ".ENABLED_FEATURES." in u.target}
    assert read, (
        "we never read torch_tensorrt's ENABLED_FEATURES.qdp_plugin: where torch_tensorrt turns "
        "plugins off, generate_plugin raises NotImplementedError instead of BackendUnavailable"
    )
    assert read <= fields, f"FeatureSet has no {sorted(read - fields)}"


def test_every_keyword_we_pass_is_accepted():
    uses = [u for u in upstream_uses() if u.call is not None]
    assert CONVERTER in {u.target for u in uses}
    problems = []
    for use in uses:
        named, has_kwargs, read = accepted_keywords(resolve(use.target))
        for keyword in sorted(use.keywords - named):
            how = "its **kwargs swallows it silently" if has_kwargs else "it has no such parameter"
            if keyword not in read:
                problems.append(f"{use}: keyword {keyword!r} is not a parameter ({how})")
    assert not problems, "\n".join(problems)


def _compilation_settings_fields() -> set[str]:
    settings = resolve("torch_tensorrt.dynamo._settings.CompilationSettings")
    return {n.target.id for n in settings.body if isinstance(n, ast.AnnAssign)}


#: Converter parameters that are not compilation settings (inputs and binding names).
NOT_SETTINGS = {
    "inputs", "arg_inputs", "kwarg_inputs", "arg_input_binding_names",
    "kwarg_input_binding_names", "output_binding_names",
}  # fmt: skip


@pytest.mark.parametrize("precision", PRECISIONS)
def test_converter_forwards_every_setting_we_pass(precision):
    """convert_exported_program_to_serialized_trt_engine builds CompilationSettings from a dict
    of its own parameters: a setting we pass must be a field and a key of that dict."""
    (use,) = _uses_of(CONVERTER)
    converter = resolve(CONVERTER)
    forwarded = {
        k.value
        for node in ast.walk(converter)
        if isinstance(node, ast.Dict)
        for k in node.keys
        if isinstance(k, ast.Constant)
    }
    every_precision = set().union(*map(set, EXPANSIONS["_engine_settings"]()))
    ours = (use.keywords - every_precision) | set(
        build._engine_settings(precision, workspace_bytes=1 << 20)
    )
    settings = ours - NOT_SETTINGS
    not_fields = sorted(settings - _compilation_settings_fields())
    dropped = sorted(settings - forwarded)
    assert not not_fields and not dropped, (
        f"{precision}: not CompilationSettings fields in torch_tensorrt 2.14: {not_fields}; "
        f"not forwarded into the converter's CompilationSettings (dropped, the engine is built "
        f"without them): {dropped}"
    )


def test_engines_are_strongly_typed_so_graph_dtypes_are_the_precision():
    """Our fp16 / bf16 engines carry their precision in the graph (build.py's docstring); that
    holds because Torch-TensorRT builds strongly typed networks (TensorRT-RTX: by default)."""
    interpreter = resolve("torch_tensorrt.dynamo.conversion._TRTInterpreter.TRTInterpreter")
    init = resolve_member(interpreter, "__init__")
    flags = {n.attr for n in ast.walk(init) if isinstance(n, ast.Attribute)}
    assert "STRONGLY_TYPED" in flags
    assert "use_explicit_typing" not in _compilation_settings_fields()  # removed: no weak typing
