"""Audit entries of the actions API: rule changes, alert transitions and customer context changes."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request

from services.actions.deps import ActionsDeps
from shared.identity.auditing import record_change
from shared.identity.ports import AuditAction, AuditDetail
from shared.identity.principal import Principal

SERVICE = "actions"


async def record(
    deps: ActionsDeps,
    request: Request,
    principal: Principal,
    action: AuditAction,
    *,
    target: str,
    details: Mapping[str, AuditDetail] | None = None,
) -> None:
    await record_change(
        deps.audit,
        request,
        principal,
        action,
        service=SERVICE,
        at=deps.clock(),
        target=target,
        details=details,
    )
