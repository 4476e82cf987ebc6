"""The house plan as a test (docs/architecture.md): no import cycles, no arrow back up.

Walks every module of the project with ``ast`` (imports inside functions included: a lazy
import is still a dependency) and checks two rules:

- **no cycle** among the project's modules (Tarjan's strongly connected components);
  imports under ``if TYPE_CHECKING:`` are not arrows (nothing runs them);
- **each wing imports only the wings below it** (``ALLOWED``): the pure core only itself,
  ``schemas/`` and the operator data; the runtime never a tool; nothing imports the tests.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "handlers", "schemas", "topics", "bench")

# wing → the wings its modules may import (its own always allowed)
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "engine.data": {"schemas"},
    "engine.core": {"schemas", "engine.data"},
    "topics": {"schemas"},
    "engine.runtime": {"schemas", "engine.data", "engine.core", "topics", "handlers"},
    "handlers": {"schemas", "engine.data", "engine.core", "topics", "engine.runtime"},
    "engine.tools": {"schemas", "engine.data", "engine.core", "topics", "handlers",
                     "engine.runtime"},
    "engine.docgen": {"schemas", "engine.data", "engine.core", "topics", "handlers",
                      "engine.runtime"},
    "bench": {"schemas", "engine.data", "engine.core", "topics", "handlers", "engine.runtime",
              "engine.tools", "tests"},
}
WINGS = sorted(ALLOWED, key=len, reverse=True)


def wing(module: str) -> str | None:
    for w in WINGS:
        if module == w or module.startswith(w + "."):
            return w
    return None if module in ("engine",) else module.split(".")[0]


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found[".".join(parts)] = path
    return found


def imports(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """The project modules ``module`` imports, with the line of each import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # type-only imports are no arrow at run time
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known or a.name.split(".")[0] in (*PACKAGES, "tests"):
                    yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[: len(up) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for a in node.names:
                full = f"{base}.{a.name}"
                target = full if full in known else base
                if target.split(".")[0] in (*PACKAGES, "tests"):
                    yield target, node.lineno


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    g: dict[str, set[str]] = {}
    for m, path in mods.items():
        g[m] = {t for t, _ in imports(m, path, known) if t in known and t != m}
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert found == [], "\n".join(" ↔ ".join(c) for c in found)


def test_the_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_each_wing_imports_only_the_wings_below_it() -> None:
    mods = modules()
    known = set(mods)
    wrong = []
    for m, path in sorted(mods.items()):
        mine = wing(m)
        if mine not in ALLOWED:
            continue
        for target, line in imports(m, path, known):
            theirs = wing(target)
            if theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({mine}) imports {target}")
    assert wrong == [], "\n".join(wrong)


def test_engine_holds_packages_by_concern() -> None:
    top = sorted(p.name for p in (ROOT / "engine").glob("*.py"))
    assert top == ["__init__.py"], top
