"""The package import graph of ``src/inboxrl``: no cycle and no upward arrow.

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
LAYERS = ("utils", "settings", "parallel", "email", "agent", "policy", "logs", "grpo", "sft", "view", "run", "cli")


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "inboxrl" else None


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def package_edges(root: Path = ROOT) -> set[tuple[str, str, str]]:
    """``(from package, to package, file)`` for every import between two packages of ``root``."""
    edges = set()
    for f in root.rglob("*.py"):
        rel = f.relative_to(root.parent).with_suffix("")
        me = package_of(".".join(rel.parts))
        if me is None or me == "__init__":
            continue
        for mod in imported_modules(f):
            other = package_of(mod)
            if other and other not in (me, "__init__") and (root / other).exists() | (root / f"{other}.py").exists():
                edges.add((me, other, str(f.relative_to(root))))
    return edges


def test_every_package_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages <= set(LAYERS), f"give {sorted(packages - set(LAYERS))} a place in LAYERS"


def test_no_package_imports_one_above_it():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = sorted(f"{a} -> {b} ({f})" for a, b, f in package_edges() if rank.get(a, 0) <= rank.get(b, 0))
    assert not upward, "upward (or sideways) imports: " + "; ".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    pkg = tmp_path / "inboxrl"
    for name in ("email", "run"):
        (pkg / name).mkdir(parents=True)
        (pkg / name / "__init__.py").write_text("")
    (pkg / "email" / "x.py").write_text("def f():\n    from inboxrl.run.train import fit\n")
    (pkg / "run" / "train.py").write_text("from inboxrl.email import x\n")
    assert package_edges(pkg) == {("email", "run", "email/x.py"), ("run", "email", "run/train.py")}
