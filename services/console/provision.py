"""Dev-stack provisioning: the dev admin person, a fresh password, a one-time sign-in link and a dev
API token per start.

``make run`` calls ``ensure_dev_admin`` (dev only) and prints what it returns; nothing here runs in
production, where the first admin is created with the bootstrap key (docs/security.md).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from services.console.people import SERVICE, issue_sign_in_link
from services.console.repository import PgConsoleStore
from shared.db import make_engine
from shared.identity.accounts import TokenRequest, create_api_token
from shared.identity.passwords import Passwords
from shared.identity.ports import AuditAction, AuditEntry, NewUser, User
from shared.identity.principal import Principal, PrincipalKind
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import ROLE_SCOPES, Role

DEV_ADMIN_EMAIL = "admin@example.com"
DEV_ADMIN_NAME = "Dev Admin"
PROVISIONER = "devstack"
#: The dev API token's name; the one of the previous start is revoked when a new one is made.
DEV_TOKEN_NAME = "make run (dev)"  # noqa: S105 - a display name, not a secret
DEV_TOKEN_HOURS = 24


@dataclass(frozen=True, slots=True)
class DevAdmin:
    """What the banner prints: how to sign in as the dev admin, two ways."""

    email: str
    password: str
    link_url: str
    link_expires_at: datetime
    api_token: str  # every admin scope, for curl and scripts; a new one each start


async def ensure_dev_admin(database_url: str, *, console_url: str, link_minutes: int = 15) -> DevAdmin:
    """Create (or re-enable) the dev admin, give it a new random password and a one-time link."""
    engine = make_engine(database_url, pool_size=1, application_name="csat-devstack")
    identity = PgIdentityStore(engine=engine, timeout_s=10)
    links = PgConsoleStore(engine=engine, timeout_s=10)
    now = datetime.now(UTC)
    password = secrets.token_urlsafe(15)
    try:
        password_hash = Passwords().hash(password)
        user = await identity.user_by_email(email=DEV_ADMIN_EMAIL)
        if user is None:
            user = await identity.create_user(
                user=NewUser(email=DEV_ADMIN_EMAIL, display_name=DEV_ADMIN_NAME, role=Role.ADMIN)
            )
            await _audit(identity, AuditAction.USER_CREATE, user.user_id, now)
        elif user.disabled or user.role is not Role.ADMIN:
            user = await identity.update_user(user=replace(user, disabled=False, role=Role.ADMIN)) or user
        await identity.set_password(user_id=user.user_id, password_hash=password_hash)
        await _audit(identity, AuditAction.USER_PASSWORD, user.user_id, now)
        link = await issue_sign_in_link(
            links=links, user=user, created_by=PROVISIONER, at=now, ttl=timedelta(minutes=link_minutes)
        )
        api_token = await _dev_token(identity, user, now)
        return DevAdmin(
            email=DEV_ADMIN_EMAIL,
            password=password,
            link_url=f"{console_url.rstrip('/')}/auth/link/{link.secret}",
            link_expires_at=link.expires_at,
            api_token=api_token,
        )
    finally:
        await engine.dispose()


async def _audit(identity: PgIdentityStore, action: AuditAction, user_id: str, at: datetime) -> None:
    await identity.append_audit(
        entry=AuditEntry(at=at, actor=PROVISIONER, action=action, service=SERVICE, target=f"user:{user_id}")
    )


async def _dev_token(identity: PgIdentityStore, user: User, now: datetime) -> str:
    """An admin API token issued by the dev admin (audited), valid a day; the previous start's is revoked."""
    for old in await identity.list_tokens():
        if old.name == DEV_TOKEN_NAME and old.revoked_at is None:
            await identity.revoke_token(token_id=old.token_id, by=PROVISIONER, at=now)
    admin = Principal(
        subject=user.user_id, kind=PrincipalKind.PERSON, role=Role.ADMIN, scopes=ROLE_SCOPES[Role.ADMIN]
    )
    created = await create_api_token(
        tokens=identity,
        users=identity,
        audit=identity,
        by=admin,
        request=TokenRequest(
            name=DEV_TOKEN_NAME,
            role=Role.ADMIN,
            scopes=ROLE_SCOPES[Role.ADMIN],
            expires_at=now + timedelta(hours=DEV_TOKEN_HOURS),
        ),
        service=SERVICE,
        at=now,
    )
    return created.secret
