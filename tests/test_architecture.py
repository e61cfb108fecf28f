"""The import contract of docs/architecture.md, checked on the real import graph (grimp).

- builder never imports runtime;
- a dialect subpackage never imports a sibling dialect, on either side;
- the device agent imports only the builder's floor and its own modules, never the server;
- there are no import loops at all, function-level imports included.
"""

from __future__ import annotations

import grimp
import pytest

BUILDER_DIALECTS = ("device", "qt", "shipper", "portal", "web")
RUNTIME_DIALECTS = ("qt", "shipper", "portal", "agent", "device")
# What the agent may use of the builder: the floor a device needs to check what it downloads.
AGENT_FLOOR = (
    "builder.atomic",
    "builder.errors",
    "builder.hashing",
    "builder.jsonsafe",
    "builder.names",
    "builder.tarsafe",
    "builder.versions",
)


@pytest.fixture(scope="module")
def edges() -> dict[str, set[str]]:
    graph = grimp.build_graph("builder", "runtime", include_external_packages=False)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_builder_never_imports_runtime(edges: dict[str, set[str]]) -> None:
    bad = sorted((m, t) for m, ts in edges.items() if _in(m, "builder") for t in ts if _in(t, "runtime"))
    assert bad == []


@pytest.mark.parametrize(("side", "dialects"), [("builder", BUILDER_DIALECTS), ("runtime", RUNTIME_DIALECTS)])
def test_dialects_never_import_each_other(
    edges: dict[str, set[str]], side: str, dialects: tuple[str, ...]
) -> None:
    def dialect_of(module: str) -> str | None:
        return next((d for d in dialects if _in(module, f"{side}.{d}")), None)

    bad = sorted(
        (m, t)
        for m, ts in edges.items()
        for t in ts
        if dialect_of(m) and dialect_of(t) and dialect_of(m) != dialect_of(t)
    )
    assert bad == []


def test_only_the_app_uses_the_console(edges: dict[str, set[str]]) -> None:
    """The console sits on top of the dialects' services (it calls them); nothing below it,
    no dialect and no shared runtime module, depends on it, so it can never become a second
    home for a rule."""
    bad = sorted(
        (m, t)
        for m, ts in edges.items()
        if not _in(m, "runtime.console") and m != "runtime.app"
        for t in ts
        if _in(t, "runtime.console")
    )
    assert bad == []


def test_agent_imports_only_the_floor(edges: dict[str, set[str]]) -> None:
    bad = sorted(
        (m, t)
        for m, ts in edges.items()
        if _in(m, "runtime.agent")
        for t in ts
        if not _in(t, "runtime.agent") and t not in AGENT_FLOOR
    )
    assert bad == []


def test_no_import_loops(edges: dict[str, set[str]]) -> None:
    assert _cycles(edges) == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_loop() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
