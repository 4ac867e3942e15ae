"""Send-time rules, pure: quiet hours in the recipient's zone, the local day for caps, backoff, address keys.

No I/O: the dispatcher passes the clock and the stored facts in and acts on the answers.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

# Re-exported: the notifier's modules and tests read quiet hours and zones from its policy.
from shared.quiethours import QuietHours as QuietHours
from shared.quiethours import wall_clock as wall_clock
from shared.quiethours import zone_for as zone_for
from shared.security.hashing import AddressHasher, HashKind


def local_day(now: datetime, zone: tzinfo) -> date:
    """The recipient's calendar day: the daily cap resets at their midnight, not the server's."""
    return now.astimezone(zone).date()


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff after ``attempt`` (1-based) failures, jittered; a longer Retry-After wins."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    jitter = (rng or random).uniform(ceiling / 2, ceiling)
    return max(jitter, retry_after or 0.0)


def normalise_address(scope: str, address: str) -> str:
    """Emails compare case-insensitively; phone numbers by their digits (with a leading +)."""
    value = address.strip()
    if scope == "email":
        return value.lower()
    if scope == "sms":
        digits = re.sub(r"[^\d]", "", value)
        return ("+" if value.startswith(("+", "00")) else "") + digits.removeprefix("00")
    return value


def legacy_address_key(scope: str, address: str) -> str:
    """The unkeyed SHA-256 entries of releases before keyed hashes: still matched, never written."""
    return hashlib.sha256(f"{scope}:{normalise_address(scope, address)}".encode()).hexdigest()


_HASH_KIND: dict[str, HashKind] = {"email": "email", "sms": "phone"}


@dataclass(frozen=True, slots=True)
class AddressKeys:
    """Keyed hashes of addresses (``CSAT_ADDRESS_HASH_KEY``): what the suppression list, the per-address
    daily cap and unsubscribe tokens hold instead of the address. An unkeyed hash is reversed by hashing
    a list of addresses; a keyed one is not without the key."""

    hasher: AddressHasher

    def key(self, scope: str, address: str) -> str:
        """The key stored for ``address`` (``scope`` is ``email`` or ``sms``)."""
        return self.hasher.hash(_HASH_KIND[scope], normalise_address(scope, address))

    def customer_key(self, customer_id: str) -> str:
        """The customer-scope suppression key an erasure leaves in place of the customer id (GDPR)."""
        return "h:" + self.hasher.hash("customer", customer_id)

    def customer_candidates(self, customer_id: str) -> tuple[str, ...]:
        """Every key an erased customer's opt-out may be stored under (each configured key)."""
        return tuple("h:" + k for k in self.hasher.candidates("customer", customer_id))

    def candidates(self, scope: str, address: str) -> tuple[str, ...]:
        """Every key a stored entry for ``address`` may have: each configured key, then the legacy hash."""
        keyed = self.hasher.candidates(_HASH_KIND[scope], normalise_address(scope, address))
        return (*keyed, legacy_address_key(scope, address))
