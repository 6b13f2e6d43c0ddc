"""The package's layers hold: no import circle, no import hidden in a function, lower floors never import upper.

The top floor is ``commands`` (the ``fmnist`` console script), the only part that parses a command line: only
its modules import argparse. The one exception is LightningCLI (:mod:`fmnist.training.lightning_cli`), which
parses its own line (jsonargparse) -- ``fmnist train fit ...`` hands it the line untouched. ``python -m``
entry points (``__main__`` modules) are shims onto the verbs and so sit on the commands floor.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fmnist"
# floor of each top-level part: a module may import its own floor or lower ones only
FLOORS = {"errors": 0, "files": 1, "serialization": 1, "terminal": 1, "page_script": 1, "studies": 1, "catalog": 1, "data": 2, "models": 2, "predictions": 2,
          "runs": 2, "outputs": 2, "ledger": 2, "training": 3, "baselines": 3, "evaluation": 4, "interpret": 4, "figures": 4, "photos": 5,
          "sweep": 5, "reproduce": 6, "commands": 7}
# What a verb's options module may import: it must answer ``--help`` before any heavy library loads.
LIGHT_FMNIST = {"fmnist.catalog", "fmnist.errors", "fmnist.files", "fmnist.commands", "fmnist.commands.names",
                "fmnist.commands.values", "fmnist.commands.options.errors", "fmnist.commands.warm_client"}
LIGHT_LIBRARIES = {"__future__", "argparse", "dataclasses", "pathlib", "re", "typing", "yaml", "ast"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULE_NAMES = {module_name(p) for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> tuple[set[str], list[str]]:
    """(fmnist modules imported at module level, fmnist imports found inside functions)."""
    tree = ast.parse(path.read_text())
    top, nested = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fmnist"):
            # ``from fmnist.evaluation import plots`` depends on the submodule, not on the package's __init__
            names = {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULE_NAMES else node.module
                     for a in node.names}
        elif isinstance(node, ast.Import):
            names = {a.name for a in node.names if a.name.startswith("fmnist")}
        else:
            continue
        if not names:
            continue
        if node.col_offset == 0:
            top |= names
        else:
            nested.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return top, nested


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@functools.cache  # parsed once: the floor test asks for it once per module
def graph() -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        top, _ = imports(path)
        edges[name] = {m for m in top if m in MODULES and m != name}
    return edges


def test_no_fmnist_import_inside_a_function() -> None:
    nested = [hit for path in MODULES.values() for hit in imports(path)[1]]
    assert nested == []


def test_no_import_circle() -> None:
    edges, state, cycles = graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in edges[node]:
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for name in edges:
        if name not in state:
            visit(name, [name])
    assert cycles == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_floors(name: str) -> None:
    part = name.split(".")[1] if "." in name else "commands"
    floor = FLOORS["commands"] if name.endswith(".__main__") else FLOORS[part]
    for target in graph()[name]:
        if target == "fmnist":
            continue
        target_part = target.split(".")[1]
        assert FLOORS[target_part] <= floor or target_part == part, f"{name} imports {target} (a higher floor)"


def test_models_know_no_lightning_and_data_knows_no_model() -> None:
    for name, path in MODULES.items():
        text = path.read_text()
        if name.startswith("fmnist.models"):
            assert "import lightning" not in text and "from lightning" not in text, name
        if name.startswith("fmnist.data"):
            assert "fmnist.models" not in text and "fmnist.training" not in text, name


def _imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_commands_parse_a_command_line() -> None:
    """argparse is imported under fmnist/commands/ only (LightningCLI parses its own: no argparse import there)."""
    parsers = sorted(name for name, path in MODULES.items()
                     if "argparse" in _imported_names(path) and not name.startswith("fmnist.commands"))
    assert parsers == []


def test_options_modules_import_only_light_things() -> None:
    """A verb's options module (and what it imports) loads in milliseconds: no torch, no domain module."""
    for name, path in MODULES.items():
        if name.startswith("fmnist.commands.options") or name in LIGHT_FMNIST - {"fmnist.catalog", "fmnist.errors", "fmnist.files"}:
            imported = _imported_names(path)
            fmnist = {m for m in imported if m.startswith("fmnist")}
            others = {m.split(".")[0] for m in imported - fmnist}
            assert fmnist <= LIGHT_FMNIST | {m for m in MODULES if m.startswith("fmnist.commands.options")}, name
            # the dispatcher's hand-off to a warm server (warm_client) needs sockets, JSON and a hash: milliseconds
            assert others <= LIGHT_LIBRARIES | {"collections", "sys", "importlib", "signal", "threading", "types",
                                                "contextlib", "hashlib", "json", "os", "socket", "stat", "struct"}, \
                (name, others - LIGHT_LIBRARIES)
