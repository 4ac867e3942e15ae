"""Appending an API change to the audit log from a route: who (the principal), what, to what, from where.

Appended after the change is committed (``identity.audit_log``, shared by every service); a failed
append is logged and the change stands, rather than undoing what the caller was told happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import structlog
from fastapi import Request

from shared.identity.accounts import audit_entry
from shared.identity.ports import AuditAction, AuditDetail, AuditLog, StoreUnavailable
from shared.identity.principal import Principal

log = structlog.get_logger(__name__)


async def record_change(
    audit: AuditLog,
    request: Request,
    principal: Principal,
    action: AuditAction,
    *,
    service: str,
    at: datetime,
    target: str,
    details: Mapping[str, AuditDetail] | None = None,
) -> None:
    """One entry for a change a route made; ``details`` short scalars only (no personal data)."""
    entry = audit_entry(
        principal,
        action,
        service=service,
        at=at,
        target=target,
        source_ip=request.client.host if request.client else None,
        details=details,
    )
    try:
        await audit.append_audit(entry=entry)
    except StoreUnavailable:
        log.warning("audit_append_failed", action=action.value, target=target, actor=principal.log_name)
