"""Keyed hashes of addresses and customer ids (HMAC-SHA256 with a key of their own).

An unkeyed SHA-256 of an email address is reversible by hashing a list of addresses; a hash keyed
with the signing secret ties two purposes to one secret. These hashes use their own key
(``CSAT_ADDRESS_HASH_KEY``), a purpose label per kind of value (an email hash never equals a phone
hash), and accept previous keys for lookups while a key is being rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import SecretStr

MIN_KEY_CHARS = 32
_PHONE_NOISE = re.compile(r"[\s().-]")

HashKind = Literal["email", "phone", "customer"]


def normalise_email(address: str) -> str:
    return address.strip().lower()


def normalise_phone(number: str) -> str:
    """Spaces, dots, dashes and brackets removed; the caller is expected to pass E.164 already."""
    return _PHONE_NOISE.sub("", number.strip())


def _normalise(kind: HashKind, value: str) -> str:
    if kind == "email":
        return normalise_email(value)
    if kind == "phone":
        return normalise_phone(value)
    return value


class AddressHasher:
    """Hex HMAC-SHA256 digests; ``keys[0]`` hashes new values, every key is tried when looking up."""

    def __init__(self, keys: Sequence[SecretStr | str]) -> None:
        raw = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in keys]
        if not raw:
            raise ValueError("an address hash key is required")
        short = [i for i, k in enumerate(raw) if len(k) < MIN_KEY_CHARS]
        if short:
            raise ValueError(f"address hash keys must be at least {MIN_KEY_CHARS} characters")
        self._keys = [k.encode() for k in raw]

    @staticmethod
    def _digest(key: bytes, kind: HashKind, value: str) -> str:
        message = f"csat.{kind}.v1\x00{_normalise(kind, value)}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def hash(self, kind: HashKind, value: str) -> str:
        """The digest to store for ``value``."""
        return self._digest(self._keys[0], kind, value)

    def candidates(self, kind: HashKind, value: str) -> list[str]:
        """Digests under every configured key, newest first: what a lookup matches during a rotation."""
        return [self._digest(key, kind, value) for key in self._keys]

    def email(self, address: str) -> str:
        return self.hash("email", address)

    def phone(self, number: str) -> str:
        return self.hash("phone", number)

    def customer(self, customer_id: str) -> str:
        """Names a customer in the audit log without the id itself."""
        return self.hash("customer", customer_id)
