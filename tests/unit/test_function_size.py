"""Functions stay short enough to read: none in ``services/`` or ``shared/`` runs past ``LIMIT`` lines
unless ``ALLOWED`` names it with the reason it stays whole (or waits), so a long function is a decision.

A route table counts whole, with the handlers nested in it: split it into one function per route group
(see ``services/actions/routes/surveys.py``), an app factory into named steps (``services/actions/
bootstrap.py``). Read with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Lines from the first decorator to the last line of the body, docstring and nested functions included.
LIMIT = 80

#: ``path::qualified name`` -> why it stays longer than ``LIMIT`` for now (one line each).
ALLOWED: dict[str, str] = {
    "services/collector/domain.py::normalize_encoded": (
        "the rating hot path (once per rating and batch item): named steps would add calls per rating "
        "(~7 % of its time), and flat its event's fields stay in one dict (the fingerprint reuses it)"
    ),
}


def long_functions(source: str, *, limit: int, filename: str = "<source>") -> dict[str, int]:
    """Every function longer than ``limit`` lines (methods as ``Class.f``, nested ones as ``outer.f``)."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                lines = (child.end_lineno or child.lineno) - first + 1
                name = prefix + child.name
                if lines > limit:
                    found[name] = lines
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source, filename), "")
    return found


def tree_long_functions(*, limit: int) -> dict[str, int]:
    """``path::name`` -> lines, for every module of ``services/`` and ``shared/``."""
    found: dict[str, int] = {}
    for top in ("services", "shared"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            source = path.read_text(encoding="utf-8")
            for name, lines in long_functions(source, limit=limit, filename=rel).items():
                found[f"{rel}::{name}"] = lines
    return found


def test_no_function_runs_past_the_limit() -> None:
    over = {key: n for key, n in tree_long_functions(limit=LIMIT).items() if key not in ALLOWED}
    assert not over, "\n".join(
        f"{key}: {n} lines (limit {LIMIT}): split it into named steps or route groups, "
        "or add it to ALLOWED with the reason it stays whole"
        for key, n in sorted(over.items())
    )


def test_every_allowed_function_is_still_long_and_has_a_reason() -> None:
    found = tree_long_functions(limit=LIMIT)
    stale = sorted(key for key in ALLOWED if key not in found)
    assert not stale, f"no longer over {LIMIT} lines (or gone): remove from ALLOWED: {stale}"
    assert all(reason.strip() for reason in ALLOWED.values())


def _function(name: str, body_lines: int, indent: str = "") -> str:
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(body_lines))
    return f"{indent}def {name}() -> None:\n{body}"


def test_a_function_one_line_over_the_limit_is_found() -> None:
    assert long_functions(_function("f", LIMIT), limit=LIMIT) == {"f": LIMIT + 1}
    assert long_functions(_function("f", LIMIT - 1), limit=LIMIT) == {}


def test_methods_nested_functions_and_decorators_count() -> None:
    source = "class C:\n    @staticmethod\n" + _function("m", LIMIT - 1, indent="    ")
    assert long_functions(source, limit=LIMIT) == {"C.m": LIMIT + 1}  # the decorator line counts
    outer = "def outer() -> None:\n" + _function("inner", LIMIT, indent="    ")
    assert long_functions(outer, limit=LIMIT) == {"outer": LIMIT + 2, "outer.inner": LIMIT + 1}
