"""The house as DESIGN.md draws it: no import circle between bnlab's modules (function-level imports
included), and the folders import one way (results, tools, models, layers, data never import lab
or cli; layers never import models)."""

import ast
from pathlib import Path

import bnlab

ROOT = Path(bnlab.__file__).parent


def _graph():
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = ("bnlab",) + path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name if name != "bnlab" else None

    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bnlab"):
                targets |= {resolve(f"{node.module}.{alias.name}") for alias in node.names}
            elif isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.startswith("bnlab")}
        graph[module] = targets - {None, module}
    return graph


def _cycle(graph):
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_circle():
    assert _cycle(_graph()) is None


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_folders_import_one_way():
    lower = {"bnlab.results", "bnlab.tools", "bnlab.models", "bnlab.layers", "bnlab.data",
             "bnlab.reference"}
    for module, targets in _graph().items():
        folder = ".".join(module.split(".")[:2])
        for target in targets:
            if folder in lower:
                assert not target.startswith(("bnlab.lab", "bnlab.cli")), (module, target)
            if folder == "bnlab.layers":
                assert not target.startswith("bnlab.models"), (module, target)
            if folder != "bnlab.reference" and not module.startswith("bnlab.reference"):
                assert not (folder == "bnlab.layers" and target.startswith("bnlab.reference")), \
                    (module, target)
