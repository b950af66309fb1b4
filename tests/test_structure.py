"""The package's shape: no import cycle, typer only in pacabench/cli/, a --help without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "pacabench"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts).removesuffix(".__init__")] = p
    return out


def _imports(name: str, path: Path, known: set[str]) -> tuple[set[str], bool]:
    """Modules of the package ``name`` imports (at load or in a function body), and whether it imports typer."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    deps, uses_typer = set(), False
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        uses_typer |= any(t.split(".")[0] == "typer" for t in targets)
        deps |= {t for t in targets if t in known and t != name and not name.startswith(t + ".")}
    return deps, uses_typer


def test_no_import_cycle_and_typer_only_in_cli():
    mods = _modules()
    graph, typer_users = {}, []
    for name, path in mods.items():
        graph[name], uses_typer = _imports(name, path, set(mods))
        if uses_typer and not name.startswith("pacabench.cli"):
            typer_users.append(name)
    assert typer_users == []
    cli_importers = [
        m
        for m, deps in graph.items()
        if not m.startswith("pacabench.cli") and any(d.startswith("pacabench.cli") for d in deps)
    ]
    assert cli_importers == ["pacabench.__main__"]
    state: dict[str, int] = {}
    cycles = []

    def visit(u: str, stack: list[str]) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if v.startswith(u + "."):  # a package re-exporting its children is not a cycle
                continue
            if state.get(v) == 1:
                cycles.append(stack[stack.index(v) :] + [v])
            elif not state.get(v):
                visit(v, stack)
        stack.pop()
        state[u] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m, [])
    assert cycles == []


def test_the_walk_finds_a_cycle(tmp_path, monkeypatch):
    """The check above can fail: two modules importing each other are seen."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from . import b\nimport typer\n")
    b.write_text("from .a import x\n")
    deps_a, typer_a = _imports("pkg.a", a, {"pkg.a", "pkg.b"})
    deps_b, _ = _imports("pkg.b", b, {"pkg.a", "pkg.b"})
    assert deps_a == {"pkg.b"} and deps_b == {"pkg.a"} and typer_a


def test_help_loads_no_heavy_module():
    code = (
        "import sys\nfrom pacabench.cli import main\n"
        "for argv in (['--help'], ['run', '--help'], ['report', '--help'], ['compare', '--help'],"
        " ['eval', 'imagenet', '--help']):\n    assert main(argv) == 0\n"
        "print(sorted(m for m in ('torch', 'timm', 'pandas', 'matplotlib', 'fvcore') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
