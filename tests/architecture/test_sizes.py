"""Small pieces: no function over 60 lines and no file over 400 in detimb/, unless the
module's docstring says why (a sentence containing "longer than the house limit")."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "detimb"
MAX_FUNCTION, MAX_FILE = 60, 400
JUSTIFIED = "longer than the house limit"


def oversized(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        if JUSTIFIED in (ast.get_docstring(tree) or ""):
            continue
        name = path.relative_to(root.parent)
        lines = len(path.read_text().splitlines())
        if lines > MAX_FILE:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION:
                    found.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_function_over_60_lines_and_no_file_over_400():
    assert oversized(PACKAGE) == []


def test_the_rule_sees_a_long_function_and_a_justified_file(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n")
    (tmp_path / "fine.py").write_text(f'"""A table, {JUSTIFIED}: it is data."""\n\ndef f():\n{body}\n')
    assert oversized(tmp_path) == [f"{tmp_path.name}/long.py:1 f: {MAX_FUNCTION + 1} lines"]
