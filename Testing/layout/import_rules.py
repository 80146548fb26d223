"""The Lib's layering rules, checked on its source (every import statement, also those inside functions).

Layers, lowest first: ``core`` < ``fileio`` < ``engine`` < ``cycle`` < ``phantom`` | ``cohort`` | ``mrml`` < ``cli``.
A package imports only from its own layer's package and the layers below (the three packages of layer 4 do not
import each other). Only ``mrml/`` imports ``slicer`` (and ``vtk``, which comes with it); nothing imports Qt or
uses ``slicer.app``. ``core/``, ``fileio/``, ``cycle/`` (but its driver) and ``mrml/`` never reach torch, directly
or through what they import. Nothing below ``cli/`` imports ``cli/``. No module imports itself through others.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

LAYERS = {"core": 0, "fileio": 1, "engine": 2, "cycle": 3, "phantom": 4, "cohort": 4, "mrml": 4, "function": 4,
          "cli": 5}
TORCH_FREE = ("core", "fileio", "cycle", "mrml")
TORCH_ALLOWED = {"cycle.driver"}  # the one module of a torch-free package that trains networks
SLICER_PACKAGES = ("mrml",)
GUI_MODULES = ("qt", "ctk", "PythonQt", "slicer.app")


def lib_modules(lib: Path) -> dict[str, Path]:
    """``{"cycle.driver": path, "core": path of core/__init__.py, "": the Lib's __init__.py, ...}``."""
    modules = {}
    for path in sorted(lib.rglob("*.py")):
        parts = list(path.relative_to(lib).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, known: Iterable[str], lib_name: str) -> set[str]:
    """What module ``name`` (at ``path``) imports: Lib modules by their dotted name under the Lib (``core.volume``),
    anything else by its full name (``torch.nn``, ``slicer``)."""
    known = set(known)
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package else name.split(".")[:-1]
    package = [part for part in package if part]
    found = set()

    def lib_name_of(dotted: str) -> str:
        # the longest known module that prefixes ``dotted`` (``core.volume.Volume`` -> ``core.volume``)
        parts = dotted.split(".") if dotted else []
        while parts and ".".join(parts) not in known:
            parts.pop()
        return ".".join(parts)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == lib_name or alias.name.startswith(lib_name + "."):
                    found.add(lib_name_of(alias.name[len(lib_name) + 1:]))
                else:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                module = node.module or ""
                if module == lib_name or module.startswith(lib_name + "."):
                    base = module[len(lib_name) + 1:]
                else:
                    found.add(module)
                    continue
            else:
                keep = len(package) - (node.level - 1)
                base = ".".join(package[:keep] + ([node.module] if node.module else []))
            for alias in node.names:  # ``from . import register``: a submodule, when one exists
                candidate = f"{base}.{alias.name}" if base else alias.name
                found.add(candidate if candidate in known else lib_name_of(base))
    return found


def import_graph(lib: Path) -> dict[str, set[str]]:
    """Every Lib module and what it imports (see :func:`imports_of`); the importing package's ``__init__`` is implied
    by Python but not listed."""
    modules = lib_modules(lib)
    return {name: imports_of(name, path, modules, lib.name) - {name} for name, path in modules.items()}


def _package(module: str) -> str:
    return module.split(".")[0]


def _reaches(graph: dict[str, set[str]], start: str, target) -> list[str] | None:
    """A chain of imports from ``start`` to a module for which ``target(name)`` holds, or None."""
    seen = {start}
    stack = [(start, [start])]
    while stack:
        module, chain = stack.pop()
        for imported in sorted(graph.get(module, ())):
            if target(imported):
                return [*chain, imported]
            if imported in graph and imported not in seen:
                seen.add(imported)
                stack.append((imported, [*chain, imported]))
    return None


def _is_external(graph: dict[str, set[str]], name: str, prefixes: Iterable[str]) -> bool:
    return name not in graph and any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(lib: Path) -> list[str]:
    """Every broken rule, one line each (empty: the Lib keeps its layers)."""
    graph = import_graph(lib)
    paths = lib_modules(lib)
    found = []
    for module, imported in sorted(graph.items()):
        package = _package(module)
        for name in sorted(imported):
            if _is_external(graph, name, GUI_MODULES):
                found.append(f"{module} imports {name} (no Qt or slicer.app in the Lib)")
            elif _is_external(graph, name, ("slicer", "vtk")) and package not in SLICER_PACKAGES:
                found.append(f"{module} imports {name} (only mrml/ imports slicer)")
            elif name in graph and name and package in LAYERS:
                other = _package(name)
                if other == "cli" and package != "cli":
                    found.append(f"{module} imports {name} (nothing below cli/ imports cli/)")
                elif other in LAYERS and other != package and LAYERS[other] >= LAYERS[package]:
                    found.append(f"{module} imports {name} ({package}/ is layer {LAYERS[package]}, {other}/ layer "
                                 f"{LAYERS[other]}: only lower layers)")
        if uses_slicer_app(paths[module]):
            found.append(f"{module} uses slicer.app (no Qt or slicer.app in the Lib)")
        if package in TORCH_FREE and module not in TORCH_ALLOWED:
            chain = _reaches(graph, module, lambda name: _is_external(graph, name, ("torch",)))
            if chain:
                found.append(f"{module} reaches torch: {' -> '.join(chain)} ({package}/ stays torch-free)")
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in import_cycles(graph)]
    return found


def uses_slicer_app(path: Path) -> bool:
    """Whether the code (not its docstrings) reads ``slicer.app``."""
    return any(isinstance(node, ast.Attribute) and node.attr == "app" and isinstance(node.value, ast.Name)
               and node.value.id == "slicer" for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of Lib modules that import each other, as a closed chain."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for name in graph[module]:
            if name not in graph:
                continue
            if name not in index:
                visit(name)
                low[module] = min(low[module], low[name])
            elif name in on_stack:
                low[module] = min(low[module], index[name])
        if low[module] == index[module]:
            group = []
            while True:
                name = stack.pop()
                on_stack.discard(name)
                group.append(name)
                if name == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return [[*group, group[0]] for group in groups]
