"""Audit entries of the actions API: rule changes and alert transitions, who did them and from where.

Appended after the change is committed, in the ``identity.audit_log`` table every service shares; a
failed append is logged (the change itself stands) rather than undoing what the caller was told.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from fastapi import Request

from services.actions.deps import ActionsDeps
from shared.identity.accounts import audit_entry
from shared.identity.ports import AuditAction, AuditDetail, StoreUnavailable
from shared.identity.principal import Principal

log = structlog.get_logger(__name__)
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
    entry = audit_entry(
        principal,
        action,
        service=SERVICE,
        at=deps.clock(),
        target=target,
        source_ip=request.client.host if request.client else None,
        details=details,
    )
    try:
        await deps.audit.append_audit(entry=entry)
    except StoreUnavailable:
        log.warning("audit_append_failed", action=action.value, target=target, actor=principal.log_name)
