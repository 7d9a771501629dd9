"""The import graph of ``src/inboxrl``: no cycle between modules, no upward arrow between packages.

Packages are layered (docs/architecture.md): a package may import only packages below it, at
module level or inside a function alike. ``run/`` (wiring) and the command line sit on top; the
library packages below never import them. A new package must be given its place in ``LAYERS``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import inboxrl

ROOT = Path(inboxrl.__file__).parent
# bottom to top; a package imports only packages listed before it
LAYERS = ("utils", "settings", "parallel", "email", "ingest", "synth", "agent", "reference", "policy",
          "logs", "grpo", "sft", "view", "run", "cli")


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Modules of ``root``'s package that ``path`` imports (absolute and relative, anywhere in it)."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    known = {module_name(f, root) for f in root.rglob("*.py")}
    return {m for m in found if m in known and m != me}


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    return {module_name(f, root): imports_of(f, root) for f in root.rglob("*.py")}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def package_edges(root: Path = ROOT) -> set[tuple[str, str, str]]:
    """``(from package, to package, module)`` for every import between two packages of ``root``."""
    return {(package_of(m), package_of(o), m) for m, targets in module_graph(root).items() for o in targets
            if package_of(m) and package_of(o) and package_of(m) != package_of(o)}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages <= set(LAYERS), f"give {sorted(packages - set(LAYERS))} a place in LAYERS"


def test_no_package_imports_one_above_it():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = sorted(f"{a} -> {b} ({m})" for a, b, m in package_edges() if rank.get(a, 0) <= rank.get(b, 0))
    assert not upward, "upward (or sideways) imports: " + "; ".join(upward)


def test_no_module_import_cycle():
    assert cycles(module_graph()) == []


def test_the_checks_see_upward_imports_and_cycles(tmp_path):
    pkg = tmp_path / "inboxrl"
    for name in ("email", "run"):
        (pkg / name).mkdir(parents=True)
        (pkg / name / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "email" / "x.py").write_text("def f():\n    from inboxrl.run.train import fit\n")
    (pkg / "email" / "y.py").write_text("from . import x\n")
    (pkg / "run" / "train.py").write_text("from inboxrl.email import y\n")
    assert package_edges(pkg) == {("email", "run", "inboxrl.email.x"), ("run", "email", "inboxrl.run.train")}
    assert cycles(module_graph(pkg)) == [["inboxrl.email.x", "inboxrl.email.y", "inboxrl.run.train"]]
