"""What the routes use, built by ``bootstrap``: stores as ports, the token signer, the authenticator
every data route asks for the caller, the templates."""

from __future__ import annotations

from dataclasses import dataclass

from services.notifier.policy import AddressKeys
from services.notifier.ports import DeliveryReads, SuppressionList
from services.notifier.templating import Templates
from services.notifier.tokens import UnsubscribeTokens
from shared.identity.guard import Authenticator
from shared.identity.ports import AuditLog


@dataclass(frozen=True, slots=True)
class NotifierDeps:
    deliveries: DeliveryReads
    suppressions: SuppressionList
    tokens: UnsubscribeTokens
    auth: Authenticator
    audit: AuditLog  # suppression changes (identity.audit_log)
    address_keys: AddressKeys
    templates: Templates  # the ones the dispatcher sends with: previews render exactly what goes out
    public_base_url: str
