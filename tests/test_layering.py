"""The dependency direction of DESIGN.md, checked over the whole tree.

channels/ translates and never imports hub or routing; routing/ decides and
never imports hub; the core never imports the web layer or the CLI above it;
and no two modules import each other, even by a detour. The tree is walked,
so a new module is checked without anyone adding it here; imports inside
functions count too, since a circle dodged by a local import is still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("channels", "routing", "hub")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            # Migrations are scripts Alembic loads by path, never imported by name.
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def imports_of(path: Path, name: str, known: set[str]) -> Iterator[tuple[str, int, bool]]:
    """(imported project module, line, at module level) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module pkg.mod when there is one.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target, node.lineno, id(node) in top_level


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    found = modules()
    known = set(found)
    return {name: list(imports_of(path, name, known)) for name, path in found.items()}


def violations(rules: list[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> list[str]:
    """(importer prefix, importers exempt, forbidden prefixes) -> 'a:line imports b' lines."""
    bad = []
    for name, targets in graph().items():
        for prefix, exempt, forbidden in rules:
            if not _under(name, (prefix,)) or _under(name, exempt):
                continue
            bad += [f"{name}:{line} imports {t}" for t, line, _ in targets if _under(t, forbidden)]
    return sorted(bad)


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_channels_import_neither_hub_nor_routing() -> None:
    assert violations([("channels", (), ("hub", "routing"))]) == []


def test_routing_never_imports_hub() -> None:
    assert violations([("routing", (), ("hub",))]) == []


def test_the_core_never_imports_the_web_layer_or_the_cli() -> None:
    rules = [
        ("hub", ("hub.web", "hub.cli"), ("hub.web", "hub.cli")),
        ("hub.web", (), ("hub.cli",)),
    ]
    assert violations(rules) == []


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None; depth-first with colours."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles() -> None:
    # A package's __init__ re-exporting its own modules is not a cycle between concerns.
    edges = {
        name: sorted({t for t, _, _ in targets if not name.startswith(t + ".")})
        for name, targets in graph().items()
    }
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


def test_the_cycle_finder_finds_a_cycle_by_a_detour() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None
