"""What the collector's routes share, built once by ``bootstrap``: the use case, ports, caches, limits."""

from __future__ import annotations

from dataclasses import dataclass

from services.collector.access import KeyResolver, OriginSet, RateLimits
from services.collector.intake import Intake, InteractionIntake
from services.collector.links import LinkSigner
from services.collector.ports import SourceRegistry, SurveyStore
from services.collector.settings import CollectorSettings
from services.collector.usage_intake import UsageIntake
from shared.identity.guard import Authenticator
from shared.identity.ports import AuditLog
from shared.security.hashing import AddressHasher


@dataclass(frozen=True, slots=True)
class CollectorDeps:
    settings: CollectorSettings
    intake: Intake
    interactions: InteractionIntake
    sources: SourceRegistry
    surveys: SurveyStore
    keys: KeyResolver
    origins: OriginSet
    limits: RateLimits
    signer: LinkSigner
    auth: Authenticator
    phone_hasher: AddressHasher
    usage: UsageIntake
    #: Source, key, identity-secret and survey changes (``identity.audit_log``); None: not recorded
    #: (an app built on injected stores, as unit tests do).
    audit: AuditLog | None = None
