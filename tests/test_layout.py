"""The layout reads as the design: no import cycles between gptkit's modules, no module over
~500 lines without a stated reason, and ruff passes."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "gptkit"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_pkg else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    names = [f"{base}.{a.name}" for a in node.names] if node.level and not node.module else [base]
    if node.module is not None:  # `from .pkg import mod` imports pkg.mod when it is a module
        names += [f"{base}.{a.name}" for a in node.names]
    return names


def import_graph(lazy: bool) -> dict[str, set[str]]:
    """module -> the gptkit modules it imports (at module level; with lazy=True, also inside functions)."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text())
        nodes = ast.walk(tree) if lazy else ast.iter_child_nodes(tree)
        deps: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                deps |= set(_resolve(mod, path.name == "__init__.py", node))
        graph[mod] = {d for d in deps if d in files and d != mod}
        # importing a.b.c runs a/__init__ and a/b/__init__ first
        for d in list(graph[mod]):
            parts = d.split(".")
            graph[mod] |= {".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in files} - {mod}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


@pytest.mark.parametrize("lazy", [False, True], ids=["module-level", "with-lazy-imports"])
def test_no_import_cycles(lazy):
    graph = import_graph(lazy)
    # a package's __init__ importing its own submodules is how a package exposes its API: only
    # a submodule importing back into a package that imports it (or any longer loop) is a cycle
    for mod in graph:
        graph[mod] = {d for d in graph[mod] if not d.startswith(mod + ".")}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_modules_over_500_lines_state_why():
    for path in PKG.rglob("*.py"):
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            head = "\n".join(path.read_text().splitlines()[:30]).lower()
            assert "over 500 lines" in head or "long because" in head, f"{path}: {n} lines and no reason at its top"


@pytest.mark.skipif(shutil.which("ruff") is None and subprocess.run([sys.executable, "-m", "ruff", "--version"],
                    capture_output=True).returncode != 0, reason="ruff not installed")
def test_ruff_passes():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "gptkit", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
