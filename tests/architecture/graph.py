"""detimb's import graph read from its source (every import, at module level, inside a
function or under ``TYPE_CHECKING``), and the house rules it must obey."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# Top to bottom; a module imports only from its own package or from packages below it.
# Packages that share a floor do not import one another, except on the ground floor, whose
# modules may import each other as long as they form no cycle.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("detimb.cli",),
    ("detimb.api",),
    ("detimb.sweeps",),
    ("detimb.engine",),
    ("detimb.evaluation",),
    ("detimb.inference",),
    ("detimb.visualization",),
    ("detimb.models",),
    ("detimb.config",),
    ("detimb.data", "detimb.samplers", "detimb.losses"),
    ("detimb.errors", "detimb.registry", "detimb.utils", "detimb.optional", "detimb.distributed"),
)
GROUND = len(FLOORS) - 1
# detimb/__init__.py hands out the facade's names on first use (PEP 562), so that importing
# any submodule stays light; it is the one import that runs from the root to the facade.
ALLOWED = {("detimb", "detimb.api")}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # ``from detimb import distributed`` imports the module detimb.distributed
    return [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]


def import_edges(root: Path) -> list[Edge]:
    """Every import of one detimb module by another under ``root`` (the package folder)."""
    files = sorted(root.rglob("*.py"))
    known = {module_name(root, f) for f in files}
    edges = []
    for path in files:
        module = module_name(root, path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(node, module, path.name == "__init__.py", known):
                    if target.split(".")[0] == root.name and target != module:
                        edges.append(Edge(module, target, node.lineno))
    return edges


def floor_of(module: str) -> tuple[int, str] | None:
    """(floor index, the floor's package or module that holds ``module``)."""
    for index, members in enumerate(FLOORS):
        for member in members:
            if module == member or module.startswith(member + "."):
                return index, member
    return None


def violations(root: Path) -> list[str]:
    """Imports that run upward or sideways, and modules that no floor holds."""
    found = []
    for e in import_edges(root):
        if (e.source, e.target) in ALLOWED or e.source == root.name:
            if (e.source, e.target) not in ALLOWED:
                found.append(f"{e.source} (line {e.line}) imports {e.target}: the root package imports only the facade")
            continue
        src, dst = floor_of(e.source), floor_of(e.target)
        if src is None or dst is None:
            found.append(f"{e.source if src is None else e.target}: on no floor (add it to FLOORS)")
        elif src[1] != dst[1] and (dst[0] < src[0] or (dst[0] == src[0] and src[0] != GROUND)):
            way = "upward" if dst[0] < src[0] else "sideways"
            found.append(f"{e.source} (line {e.line}) imports {e.target} {way}")
    return found


def cycles(root: Path) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for e in import_edges(root):
        graph.setdefault(e.source, set()).add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups
