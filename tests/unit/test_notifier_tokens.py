"""Unsubscribe tokens and webhook signatures: what is signed, what a tampered value does."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from itsdangerous import URLSafeSerializer

from services.notifier import signing
from services.notifier.policy import AddressKeys, legacy_address_key
from services.notifier.tokens import SALT, BadToken, UnsubscribeClaim, UnsubscribeTokens
from shared.security.hashing import AddressHasher

KEYS = AddressKeys(AddressHasher(["unit-test-address-hash-key-32-chars-long"]))
CLAIM = UnsubscribeClaim(
    customer_id="cus-1", scope="email", address_key=KEYS.key("email", "ana@example.com"),
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
    # "Q" and "A" differ in the high bits of a base64 digit: the last digit's low bits are padding.
    chars[position] = "A" if chars[position] not in "ABCD" else "Q"
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


def test_tokens_are_hmac_sha256_and_old_sha1_links_keep_working_only_when_allowed() -> None:
    token = UnsubscribeTokens(["s3cret"]).make(CLAIM)
    assert len(token.rsplit(".", 1)[1]) == 43  # a 32-byte HMAC-SHA256, base64url
    # What earlier releases sent: HMAC-SHA1 over the unkeyed SHA-256 of the address.
    legacy_data = {
        "c": "cus-1",
        "s": "email",
        "a": legacy_address_key("email", "ana@example.com"),
        "n": "n-0",
    }
    old = str(URLSafeSerializer(["s3cret"], salt=SALT).dumps(legacy_data))
    with pytest.raises(BadToken):
        UnsubscribeTokens(["s3cret"]).read(old)
    read = UnsubscribeTokens(["s3cret"], accept_sha1=True).read(old)
    assert read.address_key in KEYS.candidates("email", "ana@example.com")  # still matches the address
    assert UnsubscribeTokens(["s3cret"], accept_sha1=True).read(token) == CLAIM


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
