"""Local account passwords: argon2id through pwdlib, a length policy, and equal time for unknown accounts."""

from __future__ import annotations

from dataclasses import dataclass

from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher

from shared.security.text import text_problem

MIN_PASSWORD_CHARS = 12
#: argon2 takes any length, but hashing a megabyte per attempt is a cheap denial of service.
MAX_PASSWORD_CHARS = 1024


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """``new_hash`` is set when the password was right but hashed with older parameters: store it."""

    ok: bool
    new_hash: str | None = None


def password_problem(password: str, *, email: str | None = None) -> str | None:
    """Why a new password is refused (length, characters, equal to the address), or None."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"password must be at least {MIN_PASSWORD_CHARS} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"password must be at most {MAX_PASSWORD_CHARS} characters"
    why = text_problem(password, single_line=True)
    if why:
        return f"password {why}"
    if email and password.strip().casefold() == email.strip().casefold():
        return "password must not be the email address"
    return None


class Passwords:
    """argon2id with argon2-cffi's recommended cost by default; tests pass a small ``memory_cost``."""

    def __init__(self, *, time_cost: int = 3, memory_cost: int = 65536, parallelism: int = 4) -> None:
        self._hash = PasswordHash(
            (Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism),)
        )
        # Checked when the account does not exist: "no such user" takes as long as a wrong password.
        self._dummy = self._hash.hash("not a password of anyone")

    def hash(self, password: str) -> str:
        return self._hash.hash(password)

    def verify(self, password: str, stored: str | None) -> PasswordCheck:
        """Check ``password`` against ``stored`` (None: no local password, e.g. an OpenID-only account)."""
        if stored is None or len(password) > MAX_PASSWORD_CHARS:
            self._hash.verify(password[:MAX_PASSWORD_CHARS], self._dummy)
            return PasswordCheck(ok=False)
        try:
            ok, new_hash = self._hash.verify_and_update(password, stored)
        except UnknownHashError:
            self._hash.verify(password, self._dummy)
            return PasswordCheck(ok=False)
        return PasswordCheck(ok=ok, new_hash=new_hash if ok else None)
