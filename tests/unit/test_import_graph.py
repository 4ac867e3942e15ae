"""The import graph of services/ and shared/ stays acyclic and layered (read with ``ast``, nothing imported).

Every ``import`` statement counts, wherever it sits: at the top, inside a function, or under
``TYPE_CHECKING``; a cycle hidden in a function or a type hint still ties two modules together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WALKED = ("services", "shared")
DEV_ONLY = ("devstack", "bench", "tests")  # never in the image: production code cannot import them
IO_LIBRARIES = frozenset({"aiokafka", "sqlalchemy", "httpx", "fastapi", "starlette", "asyncpg", "uvicorn"})
CLI = "services.cli"  # the production command line: the one package that may use every service

# Domain code, ports and use cases that must stay free of I/O libraries, directly or through their imports.
PURE_MODULES = frozenset(
    {
        "shared.contracts",
        "shared.emaillinks",
        "shared.envelope",
        "shared.verbatims",
        "shared.yamlio",
        "shared.events",
        "shared.gsm7",
        "shared.quiethours",
        "shared.scales",
        "shared.stats",
        "shared.topics",
        "shared.tracing",
        "shared.vocabulary",
        "services.collector.csvimport",
        "services.collector.domain",
        "services.collector.helpdesks",
        "services.collector.inapp",
        "services.collector.intake",
        "services.collector.interactions",
        "services.collector.links",
        "services.collector.ports",
        "services.collector.ratelimit",
        "services.collector.reclick",
        "services.collector.sms",
        "services.collector.usage",
        "services.scorer.access",
        "services.scorer.benchmarks",
        "services.scorer.comments",
        "services.scorer.domain",
        "services.scorer.drift",
        "services.scorer.heatmap",
        "services.scorer.increments",
        "services.scorer.history",
        "services.scorer.ports",
        "services.scorer.queries",
        "services.scorer.responses",
        "services.scorer.revisions",
        "services.scorer.segments",
        "services.scorer.signals",
        "services.scorer.trend",
        "services.scorer.windows",
        "services.actions.alertpages",
        "services.actions.dryrun",
        "services.actions.engine",
        "services.actions.facts",
        "services.actions.health",
        "services.actions.health.evidence",
        "services.actions.health.model",
        "services.actions.health.normalise",
        "services.actions.health.score",
        "services.actions.health.transitions",
        "services.actions.outcomes",
        "services.actions.ports",
        "services.actions.publishing",
        "services.actions.rules",
        "services.actions.surveybook",
        "services.actions.surveys",
        "services.actions.surveys.decisions",
        "services.actions.surveys.definitions",
        "services.actions.surveys.measuring",
        "services.actions.timers",
        "services.actions.verbatims",
        "services.console.alertview",
        "services.console.customerview",
        "services.console.i18n",
        "services.console.i18n.admin",
        "services.console.i18n.alerts",
        "services.console.i18n.auth",
        "services.console.i18n.common",
        "services.console.i18n.customers",
        "services.console.i18n.home",
        "services.console.i18n.rules",
        "services.console.i18n.scores",
        "services.console.i18n.segments",
        "services.console.i18n.verbatims",
        "services.console.live",
        "services.console.navigation",
        "services.console.people",
        "services.console.playbook",
        "services.console.ports",
        "services.console.rulediff",
        "services.console.ruleforms",
        "services.console.rulewords",
        "services.console.scoreview",
        "services.console.segmentview",
        "services.console.sessions",
        "services.console.tokens",
        "services.console.verbatimview",
        "services.notifier.outcomes",
        "services.notifier.policy",
        "services.notifier.ports",
        "services.notifier.providers",
        "services.notifier.recorder",
        "services.notifier.reconcile",
        "services.notifier.mailsafe",
        "services.notifier.signing",
        "services.notifier.survey_messages",
        "services.notifier.templating",
        "services.notifier.tokens",
        "services.notifier.transitions",
    }
)

# Cycles that exist today and are being removed on another branch: each entry is the exact set of
# modules of one cycle. An entry that no longer matches a cycle fails the test, so it gets deleted.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Edge:
    """One import: ``source`` names ``target`` (a project module or an outside distribution's module)."""

    source: str
    target: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module under the walked folders, by dotted name."""
    return {_module_name(p): p for top in WALKED for p in sorted((ROOT / top).rglob("*.py"))}


def _resolve_relative(module: str, path: Path, node: ast.ImportFrom) -> str:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: str, path: Path) -> Iterator[Edge]:
    known = modules()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Edge(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(module, path, node) if node.level else node.module or ""
            for alias in node.names:
                # `from shared import events` imports the module shared.events, not a name of shared.
                sub = f"{base}.{alias.name}"
                yield Edge(module, sub if sub in known else base, node.lineno)


@cache
def edges() -> tuple[Edge, ...]:
    return tuple(edge for name, path in modules().items() for edge in _imports(name, path))


def _graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for edge in edges():
        if edge.target in known and edge.target != edge.source:
            graph[edge.source].add(edge.target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's algorithm: the groups of modules that import each other, directly or around a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(frozenset(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def one_cycle(graph: dict[str, set[str]], group: frozenset[str]) -> list[str]:
    """A readable loop inside ``group``: a -> b -> ... -> a."""
    start = min(group)
    path, seen = [start], {start}
    while True:
        nxt = min(t for t in graph[path[-1]] if t in group)
        if nxt in seen:
            return [*path[path.index(nxt) :], nxt]
        path.append(nxt)
        seen.add(nxt)


def _top(name: str) -> str:
    return name.split(".")[0]


def _service(name: str) -> str | None:
    """``services.<svc>`` for a module inside a service package, else None."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "services" and len(parts) > 1 else None


def test_the_walk_sees_the_code_and_its_imports() -> None:
    names = modules()
    assert {"shared.consumer", "services.scorer.domain", "services.cli.commands"} <= set(names)
    targets = {(e.source, e.target) for e in edges()}
    assert ("services.cli.commands", "shared.provisioning") in targets
    assert ("shared.kafka", "aiokafka") in targets
    # `from shared import events as ev` is an edge to the module shared.events
    assert any(e.target == "shared.events" and e.source.startswith("services.scorer") for e in edges())


def test_cycle_finder_reports_a_loop_and_ignores_a_chain() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    (group,) = strongly_connected(graph)
    assert group == {"a", "b", "c"}
    assert one_cycle(graph, group) == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    graph = _graph()
    groups = set(strongly_connected(graph))
    new = [
        " -> ".join(one_cycle(graph, g)) + f"   (all tied together: {', '.join(sorted(g))})"
        for g in sorted(groups - KNOWN_CYCLES, key=sorted)
    ]
    assert not new, "import cycles:\n  " + "\n  ".join(new)
    gone = [sorted(g) for g in KNOWN_CYCLES - groups]
    assert not gone, f"no longer a cycle, delete it from KNOWN_CYCLES: {gone}"


def test_shared_and_services_never_import_dev_and_test_code() -> None:
    wrong = [e for e in edges() if _top(e.target) in DEV_ONLY]
    assert not wrong, "\n".join(f"{e.source}:{e.line} imports {e.target}" for e in wrong)


def test_shared_imports_no_service() -> None:
    wrong = [e for e in edges() if _top(e.source) == "shared" and _top(e.target) == "services"]
    assert not wrong, "\n".join(f"{e.source}:{e.line} imports {e.target}" for e in wrong)


def test_no_service_imports_another() -> None:
    wrong = [
        e
        for e in edges()
        if (source := _service(e.source)) is not None
        and source != CLI
        and (target := _service(e.target)) is not None
        and target != source
    ]
    assert not wrong, "\n".join(f"{e.source}:{e.line} imports {e.target}" for e in wrong)


@pytest.mark.parametrize("pure", sorted(PURE_MODULES))
def test_pure_modules_import_no_io_library(pure: str) -> None:
    assert pure in modules(), f"{pure} is listed in PURE_MODULES but does not exist: update the table"
    graph = _graph()
    reached, todo = {pure}, [pure]
    while todo:
        for nxt in graph[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    wrong = [e for e in edges() if e.source in reached and _top(e.target) in IO_LIBRARIES]
    assert not wrong, "\n".join(f"{e.source}:{e.line} imports {e.target}" for e in wrong)
