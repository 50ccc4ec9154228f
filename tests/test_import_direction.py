"""Imports flow one way: kernels <- layers <- models <- {interpret, training}; utils from anywhere; nothing in the
library imports training or the benchmarks; no import cycles between modules. Read from the source (AST)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kanvision"

# part -> the parts it may import (besides itself and utils)
ALLOWED = {
    "utils": set(),
    "kernels": set(),
    "layers": {"kernels"},
    "models": {"layers", "kernels"},
    "interpret": {"models", "layers", "kernels"},
    "training": {"models", "layers", "kernels", "configs"},
    "bench": {"models", "layers", "kernels"},  # kanvision-bench and kanvision-models
    "configs": set(),
}
# The root package imports layers and models (registration); kanvision/train.py is `python -m kanvision.train`.
ROOT_ALLOWED = {"kanvision": {"layers", "models"}, "kanvision.train": {"training"}}

# Imports inside a function body that cross upwards on purpose; `import kanvision` never runs them.
KNOWN_UPWARD = {
    # kanvision-inspect --data builds a training DataModule from its config (the train extra).
    ("kanvision.interpret.cli", "kanvision.training.utils"),
}
# Module-level imports that cross upwards.
KNOWN_MODULE_LEVEL: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[frozenset[str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported kanvision module, whether at module level) for every import in ``path``."""
    name = _module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names if alias.name.split(".")[0] == "kanvision")
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative: resolve against this module's package
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - child.level + 1]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                if module.split(".")[0] == "kanvision":
                    # `from kanvision.x import y` may import the submodule kanvision.x.y
                    for alias in child.names:
                        sub = f"{module}.{alias.name}"
                        found.append((sub if _exists(sub) else module, top))
            visit(child, inner)

    visit(tree, True)
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else module


def _graph() -> dict[str, list[tuple[str, bool]]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _violations(graph) -> list[str]:
    problems = []
    for module, imports in graph.items():
        source = _part(module)
        for target, top in imports:
            dest = _part(target)
            if dest == source or dest == "utils" or target == "kanvision":
                continue
            if source in ALLOWED:
                ok = dest in ALLOWED[source]
            else:
                ok = dest in ROOT_ALLOWED.get(module, set())
            if ok or (module, target) in KNOWN_MODULE_LEVEL:
                continue
            if not top and (module, target) in KNOWN_UPWARD:
                continue
            problems.append(f"{module} imports {target}{'' if top else ' (in a function)'}")
    return problems


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components (more than one module) of the module graph, function-level imports included;
    a package's __init__ importing its own submodules is not a cycle."""
    edges = {
        m: {t for t, _ in imports if t in graph and t != m and not (t.startswith(m + ".") and _is_package(m))}
        for m, imports in graph.items()
    }
    for m in list(edges):  # a submodule importing its parent package is importing the package's own submodules
        edges[m] = {t for t in edges[m] if not (m.startswith(t + ".") and _is_package(t))}
    index, low, stack, on_stack, components, counter = {}, {}, [], set(), [], [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
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
            if len(component) > 1:
                components.append(sorted(component))

    for v in edges:
        if v not in index:
            connect(v)
    return [c for c in components if frozenset(c) not in KNOWN_CYCLES]


def _is_package(module: str) -> bool:
    return (PACKAGE.parent.joinpath(*module.split(".")) / "__init__.py").is_file()


def test_imports_flow_one_way():
    assert _violations(_graph()) == []


def test_no_import_cycles_between_modules():
    assert _cycles(_graph()) == []


def test_the_checks_catch_an_upward_import_and_a_cycle():
    graph = _graph()
    graph["kanvision.layers.kan_linear"] = [*graph["kanvision.layers.kan_linear"], ("kanvision.models.kat", True)]
    graph["kanvision.models.kat"] = [*graph["kanvision.models.kat"], ("kanvision.training.callbacks", False)]
    graph["kanvision.kernels.compiled"] = [("kanvision.kernels.rational_flops", False)]
    graph["kanvision.kernels.rational_flops"] = [("kanvision.kernels.compiled", True)]
    assert _violations(graph) == [
        "kanvision.layers.kan_linear imports kanvision.models.kat",
        "kanvision.models.kat imports kanvision.training.callbacks (in a function)",
    ]
    assert ["kanvision.kernels.compiled", "kanvision.kernels.rational_flops"] in _cycles(graph)


def test_nothing_in_the_library_imports_the_benchmarks_folder():
    importers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            importers += [f"{_module_name(path)} imports {n}" for n in names if n.split(".")[0] == "benchmarks"]
    assert importers == []
