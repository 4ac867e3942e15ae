"""The caller of a request, whoever it is (person, machine token, source key), and what it may see (pure).

Every route asks the same questions of a ``Principal``: may it use this scope, may it see this segment,
this account, this distribution. The answers live here so that four services give the same ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from shared.identity.scopes import ALL_DATA_ROLES, BOOTSTRAP_SCOPES, Role, Scope

#: The subject of the bootstrap admin key's principal (no person, no token row behind it).
BOOTSTRAP_SUBJECT = "bootstrap"

_PART = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_VALUE_MAX = 200


class PrincipalKind(StrEnum):
    PERSON = "person"  # signed in through the console (local account or OpenID Connect)
    TOKEN = "token"  # noqa: S105 - a kind name, not a secret; a scoped API token held by another system (or the bootstrap admin key)
    SOURCE = "source"  # a collector source key posting ratings


class InvalidGrant(ValueError):
    """A segment grant that does not read ``dimension:value[,dimension:value...]``."""


@dataclass(frozen=True, slots=True, order=True)
class SegmentGrant:
    """Access to one segment and all within it: ``store:paris-1`` or ``store:paris-1,channel:chat``.

    A query is covered when it filters on every (dimension, value) of the grant; extra filters only
    narrow it further, so ``store:paris-1`` covers ``store:paris-1 & channel:chat`` but not ``channel:chat``.
    """

    pairs: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> SegmentGrant:
        pairs: dict[str, str] = {}
        for raw in text.split(","):
            dim, sep, value = raw.strip().partition(":")
            if not sep or not _PART.match(dim) or not value or len(value) > _VALUE_MAX:
                raise InvalidGrant(f"segment grant {text!r} must look like dimension:value[,dimension:value]")
            if dim in pairs:
                raise InvalidGrant(f"segment grant {text!r} names {dim!r} twice")
            pairs[dim] = value
        return cls(pairs=tuple(sorted(pairs.items())))

    def covers(self, filters: Mapping[str, str]) -> bool:
        return all(filters.get(dim) == value for dim, value in self.pairs)

    def as_dict(self) -> dict[str, str]:
        return dict(self.pairs)

    def __str__(self) -> str:
        return ",".join(f"{dim}:{value}" for dim, value in self.pairs)


def parse_grants(texts: Iterable[str] | None) -> frozenset[SegmentGrant] | None:
    """Grants as stored (``None`` = every segment, ``[]`` = no segment at all)."""
    if texts is None:
        return None
    return frozenset(SegmentGrant.parse(t) for t in texts)


def grant_texts(grants: frozenset[SegmentGrant] | None) -> list[str] | None:
    """The stored and signed form of grants, sorted so equal grants serialise equally."""
    return None if grants is None else sorted(str(g) for g in grants)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. ``subject`` is an opaque id (user, token or source id), never an email address.

    ``segments`` None means every segment; an empty set means none (only segment-free data such as
    alerts of owned accounts). ``accounts`` and ``owner_email`` say which customers a CSM owns: the
    account ids and the owner address the customers API stores for them.
    """

    subject: str
    kind: PrincipalKind
    role: Role | None
    scopes: frozenset[Scope]
    segments: frozenset[SegmentGrant] | None = None
    accounts: frozenset[str] = field(default_factory=frozenset)
    owner_email: str | None = None

    @property
    def log_name(self) -> str:
        """How logs and the audit log name the caller: kind and opaque id, no personal data."""
        return f"{self.kind.value}:{self.subject}"

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes

    def missing(self, scopes: Iterable[Scope]) -> frozenset[Scope]:
        """The scopes of ``scopes`` this principal lacks (empty when it may proceed)."""
        return frozenset(scopes) - self.scopes

    @property
    def sees_all_segments(self) -> bool:
        return self.segments is None

    @property
    def sees_all_accounts(self) -> bool:
        return self.role in ALL_DATA_ROLES

    def segment_allowed(self, filters: Mapping[str, str]) -> bool:
        """May this caller see data filtered on ``filters`` (``{}`` = the whole, unfiltered)?"""
        if self.segments is None:
            return True
        return any(grant.covers(filters) for grant in self.segments)

    def visible_values(self, dimension: str) -> frozenset[str] | None:
        """Values of ``dimension`` a one-dimension breakdown may show (None: all of them).

        Only single-dimension grants on that dimension open a row of its breakdown: a grant on
        ``store:paris-1,channel:chat`` does not cover the ``store=paris-1`` row (it spans every channel).
        """
        if self.segments is None:
            return None
        return frozenset(
            g.pairs[0][1] for g in self.segments if len(g.pairs) == 1 and g.pairs[0][0] == dimension
        )

    def sees_distribution(self, n: int, min_group: int) -> bool:
        """Whether a score over ``n`` answers may be broken down (counts per score, NPS groups...).

        Below ``min_group`` answers a distribution can reveal one person's answer, so only roles that
        see every segment get it; everyone still gets the score and ``n``.
        """
        return self.role in ALL_DATA_ROLES or n >= min_group

    def owns(self, *, account_id: str | None = None, owner_email: str | None = None) -> bool:
        """Whether a customer (by its account id or its owner's address) is within this caller's reach."""
        if self.sees_all_accounts:
            return True
        if account_id is not None and account_id in self.accounts:
            return True
        return bool(
            owner_email and self.owner_email and owner_email.strip().casefold() == self.owner_email.casefold()
        )


def bootstrap_principal(scopes: frozenset[Scope] = BOOTSTRAP_SCOPES) -> Principal:
    """What the bootstrap admin key may do: manage people and tokens, nothing else (in prod).

    Outside prod a service may hand it every admin scope (``shared.identity.wiring.bootstrap_scopes``),
    so scripts, tests and ``make run`` keep one credential for everything.
    """
    return Principal(subject=BOOTSTRAP_SUBJECT, kind=PrincipalKind.TOKEN, role=Role.ADMIN, scopes=scopes)
