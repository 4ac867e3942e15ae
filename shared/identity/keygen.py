"""Print fresh production secrets: ``python -m shared.identity.keygen`` (see docs/security.md).

Output is shell ``export`` lines, or ``NAME=value`` lines with ``--env-file`` (what ``kubectl create
secret --from-env-file`` reads): put them into the secret store, never into the repository. The
console gets the private signing key; every service gets the public JWKS.
"""

from __future__ import annotations

import json
import secrets
import shlex
import sys

from shared.identity.accesstokens import KeyRing, SigningKey

#: Random secrets every prod deployment needs (one value each, 256 bits, URL-safe).
RANDOM_SECRETS = (
    "CSAT_BOOTSTRAP_ADMIN_KEY",
    "CSAT_ADDRESS_HASH_KEY",
    "CSAT_SIGNING_SECRET",
    "CSAT_UNSUBSCRIBE_SECRET",
    "CSAT_SOURCE_IDENTITY_KEY",
    "CSAT_SESSION_SECRET",
)


def production_secrets() -> dict[str, str]:
    """Every generated secret by variable name, the signing key pair included."""
    values = {name: secrets.token_urlsafe(32) for name in RANDOM_SECRETS}
    key = SigningKey.generate()
    values["CSAT_IDENTITY_SIGNING_KEY"] = key.private_jwk()
    values["CSAT_IDENTITY_PUBLIC_KEYS"] = json.dumps(KeyRing.of([key]).to_jwks(), sort_keys=True)
    return values


def main(argv: list[str] | None = None) -> int:
    """``--signing-key``: only a new key pair (a rotation); ``--env-file``: ``NAME=value`` lines."""
    args = set(sys.argv[1:] if argv is None else argv)
    if args - {"--signing-key", "--env-file"}:
        sys.stderr.write("usage: python -m shared.identity.keygen [--signing-key] [--env-file]\n")
        return 2
    values = production_secrets()
    if "--signing-key" in args:
        values = {k: v for k, v in values.items() if k.startswith("CSAT_IDENTITY_")}
    for name, value in values.items():
        line = f"{name}={value}" if "--env-file" in args else f"export {name}={shlex.quote(value)}"
        sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
