"""Schemathesis hooks for the auth-fuzzing pass (tests/faults/test_auth_fuzz.py), loaded by the ``st``
process through ``SCHEMATHESIS_HOOKS``.

The check ``refused_without_credential``: with no credential, an operation that is not public
(``tests.integration.test_route_access.PUBLIC``) answers 401, or is refused before the credential is
looked at by a 4xx problem that carries no data (422 for a body that is not JSON or a NUL byte in a
query, 400 for a body that cannot be parsed as its content type, 413 for a body over the limit, 405
for a method the path does not have); the console's session pages send to the sign-in page (303) or
refuse a POST without its CSRF token (403). Anything else (a 2xx above all) fails. Each answer is
tallied, by kind, into the file named by ``CSAT_FUZZ_TALLY`` (one line per request; statuses and
operation labels only, never inputs) so the test can report the figures.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis

from tests.integration.test_route_access import PUBLIC, SESSION_PAGES

SERVICE = os.environ.get("CSAT_FUZZ_SERVICE", "")
TALLY = os.environ.get("CSAT_FUZZ_TALLY", "")
#: Refusals that come before the credential is read, and whose body is only a problem document.
EARLY_REFUSALS = {400, 405, 413, 415, 422}
PROBLEM_KEYS = {"type", "title", "status", "detail", "errors", "field"}


def _tally(kind: str, label: str, status: int) -> None:
    if TALLY:
        with open(TALLY, "a", encoding="utf-8") as out:
            out.write(json.dumps({"kind": kind, "operation": label, "status": status}) + "\n")


def _problem_only(response: Any) -> bool:
    if not response.headers.get("content-type", [""])[0].startswith("application/problem+json"):
        return False
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) <= PROBLEM_KEYS


@schemathesis.check
def refused_without_credential(ctx: Any, response: Any, case: Any) -> bool | None:
    method, path = case.operation.method.upper(), case.operation.path
    status = response.status_code
    if (method, path) in PUBLIC.get(SERVICE, set()):
        _tally("public", f"{method} {path}", status)
        return None
    if SERVICE == "console" and (method, path) in SESSION_PAGES:
        ok = status == 303 or (method == "POST" and status == 403)
        _tally("session" if ok else "answered", f"{method} {path}", status)
        assert ok, f"{method} {path} answered {status} without a session"
        return None
    if status == 401:
        _tally("401", f"{method} {path}", status)
        return None
    if status in EARLY_REFUSALS and _problem_only(response):
        _tally("early", f"{method} {path}", status)
        return None
    _tally("answered", f"{method} {path}", status)
    raise AssertionError(f"{method} {path} answered {status} without a credential (expected 401)")
