"""Unsubscribe tokens and webhook signatures: what is signed, what a tampered value does."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from services.notifier import signing
from services.notifier.policy import address_key
from services.notifier.tokens import BadToken, UnsubscribeClaim, UnsubscribeTokens

CLAIM = UnsubscribeClaim(
    customer_id="cus-1", scope="email", address_key=address_key("email", "ana@example.com"),
    notification_id="n-1", locale="fr",
)  # fmt: skip


def test_a_token_round_trips_and_carries_no_address() -> None:
    tokens = UnsubscribeTokens(["s3cret"])
    token = tokens.make(CLAIM)
    assert tokens.read(token) == CLAIM
    assert "ana" not in token and "example" not in token
    assert all(c.isalnum() or c in "-_." for c in token)  # safe in a URL path and a mailto subject


@pytest.mark.parametrize("position", [0, 10, -1, -5])
def test_a_tampered_token_is_refused(position: int) -> None:
    tokens = UnsubscribeTokens(["s3cret"])
    token = tokens.make(CLAIM)
    chars = list(token)
    chars[position] = "A" if chars[position] != "A" else "B"
    with pytest.raises(BadToken):
        tokens.read("".join(chars))


def test_another_key_is_refused_and_a_rotated_key_still_reads() -> None:
    old = UnsubscribeTokens(["old-secret"]).make(CLAIM)
    with pytest.raises(BadToken):
        UnsubscribeTokens(["new-secret"]).read(old)
    rotated = UnsubscribeTokens(["new-secret", "old-secret"])
    assert rotated.read(old) == CLAIM
    fresh = rotated.make(CLAIM)
    assert UnsubscribeTokens(["new-secret"]).read(fresh) == CLAIM  # new links use the new key


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        UnsubscribeTokens([""])


def test_webhook_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"n-1"}'
    expected = hmac.new(b"whsec", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signing.sign("whsec", 1700000000, body) == f"t=1700000000,v1={expected}"


def test_webhook_signature_verification() -> None:
    body = b'{"id":"n-1"}'
    header = signing.sign("whsec", 1700000000, body)
    assert signing.verify("whsec", header, body, now=1700000100) == 1700000000
    with pytest.raises(signing.SignatureError, match="mismatch"):
        signing.verify("whsec", header, body + b" ", now=1700000100)
    with pytest.raises(signing.SignatureError, match="mismatch"):
        signing.verify("other", header, body, now=1700000100)
    with pytest.raises(signing.SignatureError, match="tolerance"):
        signing.verify("whsec", header, body, now=1700000000 + 301)
    with pytest.raises(signing.SignatureError, match="timestamp"):
        signing.verify("whsec", "v1=abc", body, now=1700000000)
    # During a secret rotation a sender may send two v1 values; either one verifies.
    both = header + ",v1=" + "0" * 64
    assert signing.verify("whsec", both, body, now=1700000000) == 1700000000
