"""The one-click email links' token format, shared by who mints them (the collector's admin route, the
actions' survey invitations) and who reads them (the collector). Pure: itsdangerous, no I/O.

A token is the link's claims signed with HMAC-SHA256 (not encrypted: no personal data inside).
"""

from __future__ import annotations

import hashlib
from typing import Any

from itsdangerous import URLSafeSerializer

SALT = "csat.email-link.v1"
#: The development secret; every service refuses it outside dev and test.
DEV_SIGNING_SECRET = "dev-signing-secret-not-for-production"  # noqa: S105 - refused outside dev/test


def serializer(keys: list[str]) -> URLSafeSerializer:
    """Signs with the last key, verifies against all of them (rotation)."""
    return URLSafeSerializer(keys, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})


def sign_claims(secret: str, claims: dict[str, Any]) -> str:
    token = serializer([secret]).dumps(claims)
    assert isinstance(token, str)
    return token
