"""The source tree's shape: imports point downward with no cycle, and no file, function or
folder outgrows the limits (files <= 800 lines, functions <= 80, a folder's own files
<= 30% of the package's lines)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Layers, lowest first: a module may import its own layer (no cycle) or lower ones; the run
# packages (classify, detect, transfer, export) do not import one another.
LAYERS = (
    {"ops", "_validate", "_atomic", "_repr", "_clock", "_moved", "errors", "memory", "limits"}
    | {"_run_lock"},
    {"models", "data", "detection", "evaluation"},
    {"engine", "visualize"},
    {"classify", "detect", "transfer", "export"},
    {"demo", "api"},
    {"cli", "__main__", "__init__"},
)
RUNS = LAYERS[3]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "sppnet").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's sppnet imports (function-local ones too), as module names."""

    def resolve(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.startswith("sppnet")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sppnet"):
                targets |= {resolve(f"{node.module}.{a.name}") for a in node.names}
        edges[name] = {t for t in targets if t != name and not t.startswith(name + ".")}
    return edges


def _layer(module: str) -> tuple[int, str]:
    part = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, layer in enumerate(LAYERS) if part in layer), part


def test_imports_point_downward_and_runs_do_not_import_each_other():
    wrong = []
    for source, targets in _imports(_modules()).items():
        (level, part) = _layer(source)
        for target in targets:
            (to_level, to_part) = _layer(target)
            sideways = part in RUNS and to_part in RUNS and part != to_part
            if to_level > level or sideways:
                wrong.append(f"{source} -> {target}")
    assert not wrong


def test_no_import_cycle():
    edges = _imports(_modules())
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            assert state.get(nxt) != 1, " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])


def test_files_functions_and_folders_stay_small():
    lines = {path: len(path.read_text().splitlines()) for path in _modules().values()}
    assert not [f"{p.name}: {n}" for p, n in lines.items() if n > 800]
    long_functions = [
        f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in lines
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > 80
    ]
    assert not long_functions
    folders: dict[Path, int] = {}
    for path, n in lines.items():
        folders[path.parent] = folders.get(path.parent, 0) + n
    total = sum(lines.values())
    assert not [f"{d.name}: {n / total:.0%}" for d, n in folders.items() if n > 0.3 * total]
