"""The layer rules of the README's layout section, checked on every import in the package.

Imports inside functions count too: a lazy import is still a dependency. Each rule names which
parts of pebuilder a part may use; a cycle between parts fails the test.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "src" / "pebuilder"

# part -> parts it may import (besides itself). The bottom: errors, fsutil, arch, fsroot, runner, formats.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "fsutil": {"errors"},
    "arch": {"errors"},
    "runner": {"errors"},
    "fsroot": {"errors", "fsutil"},
    "formats": {"errors", "fsutil", "arch", "fsroot", "runner"},
    "net": {"errors", "fsutil", "fsroot", "runner", "formats", "version"},
    "config": {"errors", "fsutil", "arch", "formats"},
    "engine": {"errors", "fsutil"},
    "boot": {"errors", "arch", "runner"},
    "customise": {"errors", "fsutil", "arch", "fsroot", "runner", "formats", "net", "config"},
    "outputs": {"errors", "fsutil", "arch", "fsroot", "runner", "formats", "config"},
    "tinycore": {"errors", "fsutil", "arch", "fsroot", "runner", "formats", "net", "config", "customise", "outputs"},
    "debian": {"errors", "fsutil", "arch", "fsroot", "runner", "formats", "net", "config", "customise", "outputs"},
    "builds": {"errors", "fsutil", "arch", "fsroot", "runner", "formats", "net", "config", "customise", "outputs",
               "engine", "tinycore", "debian", "boot"},
    "cli": {"errors", "fsutil", "arch", "fsroot", "runner", "formats", "net", "config", "customise", "outputs",
            "engine", "tinycore", "debian", "boot", "builds", "version"},
    "main": {"cli"},
    "version": set(),
}


def part_of(module: str) -> str:
    """pebuilder.formats.cpio -> formats; pebuilder.fsroot -> fsroot; pebuilder -> version."""
    parts = module.split(".")
    if parts[0] != "pebuilder":
        return ""
    if len(parts) == 1 or parts[1] == "__version__":
        return "version"
    return "main" if parts[1] == "__main__" else parts[1]


def imports() -> dict[str, set[tuple[str, str, int]]]:
    """part -> {(imported part, file, line)} for every pebuilder import in the package."""
    out: dict[str, set[tuple[str, str, int]]] = defaultdict(set)
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        me = part_of(module)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
                if node.module != "pebuilder":
                    names.append(node.module)
            for n in names:
                other = part_of(n)
                if other and other != me:
                    out[me].add((other, str(path.relative_to(PKG)), node.lineno))
    return out


def test_every_import_follows_the_layer_rules():
    bad = []
    for part, deps in imports().items():
        assert part in ALLOWED, f"pebuilder/{part} is a new part: add it to the layer rules (and the README)"
        for other, file, line in sorted(deps):
            if other not in ALLOWED[part]:
                bad.append(f"{file}:{line}: {part} imports {other}")
    assert not bad, "layer rules broken:\n" + "\n".join(bad)


def test_no_cycles_between_parts():
    graph = {p: {o for o, _, _ in deps} for p, deps in imports().items()}
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(p: str) -> None:
        seen[p] = 1
        stack.append(p)
        for q in graph.get(p, ()):
            if seen.get(q) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(q):], q]))
            if q not in seen:
                visit(q)
        stack.pop()
        seen[p] = 2

    for p in graph:
        if p not in seen:
            visit(p)


def test_no_module_cycles_within_the_engine_and_builds():
    """The two cycles the architecture review found (builds.default <-> cli, engine.stages <-> progress)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in (PKG / "engine").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pebuilder.engine."):
                edges[path.stem].add(node.module.rsplit(".", 1)[1])
    for a, bs in edges.items():
        for b in bs:
            assert a not in edges.get(b, set()), f"engine.{a} and engine.{b} import each other"
