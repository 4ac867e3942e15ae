"""The home page, and a "being built" page at the address of each view not built yet.

A view engineer replaces the placeholder by a router of their own (``routes/<view>.py``), sets
``ready=True`` in ``navigation.VIEWS`` and includes the router in ``bootstrap``; see docs/console.md.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.navigation import VIEWS, View, views_for


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    anyone_signed_in = Depends(deps.gate.person())

    @r.get("/")
    async def home(request: Request, person: SignedIn = anyone_signed_in) -> Response:
        grants = person.principal.segments
        return deps.pages.render(
            request,
            "home.html",
            views=views_for(person.principal),
            grants=sorted(str(g) for g in grants) if grants is not None else None,
        )

    for view in VIEWS:
        if not view.ready:
            _placeholder(r, deps, view)
    return r


def _placeholder(r: APIRouter, deps: ConsoleDeps, view: View) -> None:
    reader = Depends(deps.gate.person(view.scope))

    async def page(request: Request, person: SignedIn = reader) -> Response:
        return deps.pages.render(request, "placeholder.html", view=view)

    r.add_api_route(view.path, page, methods=["GET"], name=f"placeholder_{view.key}")
