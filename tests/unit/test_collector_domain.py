"""Pure collector pieces: every scale through normalisation, fingerprints, keys, limits, links, SMS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.collector.access import client_ip
from services.collector.domain import RatingIn, RatingRejected, fingerprint, normalize
from services.collector.keys import generate_key, hash_key, key_id_of
from services.collector.links import EmailLink, LinkExpired, LinkInvalid, LinkSigner
from services.collector.ratelimit import KeyedLimiter, retry_after
from services.collector.settings import CollectorSettings
from services.collector.sms import compute_signature, normalize_phone, parse_reply, signature_valid, twiml
from shared.scales import SCALES, Metric, ScaleError, get_scale

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def rating(**kw: Any) -> RatingIn:
    return RatingIn.model_validate({"metric": "csat", "score": 4, "customer": {"id": "c1"}, **kw})


# Every scale of docs/collector.md: (metric, scale, score) -> (normalized, sentiment, positive, nps class)
EVERY_SCALE = [
    ("csat", "1-5", 1, 0.0, "negative", False, None),
    ("csat", "1-5", 3, 0.5, "neutral", False, None),
    ("csat", "1-5", "very satisfied", 1.0, "positive", True, None),
    ("csat", "stars", 4, 0.75, "positive", True, None),
    ("csat", "1-3", 1, 0.0, "negative", False, None),
    ("csat", "smileys", "\U0001f610", 0.5, "neutral", False, None),
    ("csat", "1-3", "happy", 1.0, "positive", True, None),
    ("csat", "1-10", 7, 0.666667, "positive", True, None),
    ("csat", "1-10", 5, 0.444444, "neutral", False, None),
    ("csat", "1-10", 1, 0.0, "negative", False, None),
    ("csat", "yes-no", "yes", 1.0, "positive", True, None),
    ("csat", "yes-no", False, 0.0, "negative", False, None),
    ("nps", "0-10", 10, 1.0, "positive", True, "promoter"),
    ("nps", "0-10", 7, 0.7, "neutral", False, "passive"),
    ("nps", "0-10", 0, 0.0, "negative", False, "detractor"),
    ("ces", "1-7", 7, 1.0, "positive", True, None),
    ("ces", "1-7", 4, 0.5, "neutral", False, None),
    ("ces", "1-7", 1, 0.0, "negative", False, None),
    ("ces", "1-5", 1, 1.0, "positive", True, None),  # effort: lower is easier
    ("ces", "1-5", 3, 0.5, "neutral", False, None),
    ("ces", "1-5-effort", 5, 0.0, "negative", False, None),
]


@pytest.mark.parametrize(
    ("metric", "scale", "score", "normalized", "sentiment", "positive", "nps"), EVERY_SCALE
)
def test_every_scale_is_normalised_once_into_the_event(
    metric: str, scale: str, score: Any, normalized: float, sentiment: str, positive: bool, nps: str | None
) -> None:
    event = normalize(rating(metric=metric, scale=scale, score=score), received_at=NOW)
    assert event.normalized == normalized
    assert event.sentiment.value == sentiment
    assert event.positive is positive
    assert (event.nps_class.value if event.nps_class else None) == nps


def test_every_defined_scale_is_covered_by_the_table() -> None:
    covered = {(m, get_scale(Metric(m), s).name) for m, s, *_ in EVERY_SCALE}
    assert covered == {(m.value, name) for m, name in SCALES}


@pytest.mark.parametrize(("metric", "name"), [(m.value, n) for m, n in SCALES])
def test_every_scale_refuses_scores_just_outside_it(metric: str, name: str) -> None:
    scale = get_scale(Metric(metric), name)
    for bad in (scale.low - 1, scale.high + 1):
        with pytest.raises(RatingRejected) as err:
            normalize(rating(metric=metric, scale=name, score=bad), received_at=NOW)
        assert err.value.field == "score"
    for good in (scale.low, scale.high):
        assert normalize(rating(metric=metric, scale=name, score=good), received_at=NOW).score == good


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"scale": "1-4"}, "scale"),
        ({"metric": "nps", "scale": "1-5"}, "scale"),
        ({"metric": "ces", "scale": "0-10"}, "scale"),
        ({"score": "excellent"}, "score"),
        ({"score": 2.5}, "score"),
        ({"score": ""}, "score"),
        ({"metric": "nps", "score": "yes"}, "score"),
        ({"scale": "yes-no", "score": "maybe"}, "score"),
        ({"occurred_at": "2026-11-23T11:00:00Z"}, "occurred_at"),
    ],
)
def test_bad_input_names_the_field(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(RatingRejected) as err:
        normalize(rating(**patch), received_at=NOW)
    assert err.value.field == field


def test_fingerprint_is_about_content_not_spelling_or_receive_time() -> None:
    a = normalize(rating(score=4), received_at=NOW, rating_id="x")
    b = normalize(rating(score="satisfied"), received_at=NOW + timedelta(seconds=3), rating_id="x")
    c = normalize(rating(score=5), received_at=NOW, rating_id="x")
    assert fingerprint(a, client_occurred_at=None) == fingerprint(b, client_occurred_at=None)
    assert fingerprint(a, client_occurred_at=None) != fingerprint(c, client_occurred_at=None)
    assert fingerprint(a, client_occurred_at=None) != fingerprint(a, client_occurred_at=NOW)


def test_keys_are_random_hashed_and_carry_a_public_id() -> None:
    k1, k2 = generate_key(), generate_key()
    assert k1.secret != k2.secret and k1.secret.startswith("csk_")
    assert hash_key(k1.secret) == k1.key_hash and len(k1.key_hash) == 32
    assert key_id_of(k1.secret) == k1.key_id
    assert key_id_of("dev-admin-key") is None


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = KeyedLimiter(rate_per_s=2, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0  # each client has its own bucket
    now[0] = 0.5
    assert limiter.acquire("a") == 0
    assert limiter.acquire("a", rate=0.1, burst=1) == pytest.approx(10)
    assert retry_after(0.01) == 1 and retry_after(2.2) == 3
    assert KeyedLimiter(rate_per_s=0, burst=1).acquire("x") == 0  # 0 = off


def test_limiter_memory_is_bounded() -> None:
    limiter = KeyedLimiter(rate_per_s=1, burst=1, max_clients=100, clock=lambda: 0.0)
    for i in range(1000):
        assert limiter.acquire(f"ip-{i}") == 0  # every client's first request uses its one token
    assert limiter.acquire("ip-999") > 0  # recently seen: still remembered, bucket empty
    assert limiter.acquire("ip-0") == 0  # forgotten long ago: starts again with a full bucket


def test_forwarded_for_only_from_trusted_proxies() -> None:
    settings = CollectorSettings(trusted_proxies=["10.0.0.0/8"])
    scope: dict[str, Any] = {
        "client": ("10.1.2.3", 1),
        "headers": [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9, 10.0.0.7")],
    }
    assert client_ip(scope, settings.proxy_networks) == "203.0.113.9"
    assert client_ip({**scope, "client": ("198.51.100.1", 1)}, settings.proxy_networks) == "198.51.100.1"
    assert client_ip(scope, []) == "10.1.2.3"


# ---- email links ------------------------------------------------------------------------------


def link(**kw: Any) -> EmailLink:
    base: dict[str, Any] = {
        "survey_id": "s-1",
        "customer_id": "c-1",
        "metric": "csat",
        "scale": "1-5",
        "expires_at": NOW + timedelta(days=1),
    }
    return EmailLink(**{**base, **kw})


def test_links_round_trip_and_rating_id_is_per_survey_and_customer() -> None:
    signer = LinkSigner(secret="a-long-enough-secret")
    original = link(segment={"store": "p1"}, locale="fr", question="Q?")
    assert signer.verify(signer.sign(original), now=NOW) == original
    assert link().rating_id == link(expires_at=NOW + timedelta(days=9)).rating_id
    assert link().rating_id != link(customer_id="c-2").rating_id != link(survey_id="s-2").rating_id


def test_tampered_foreign_and_expired_links_are_refused() -> None:
    signer = LinkSigner(secret="a-long-enough-secret")
    token = signer.sign(link())
    payload, _, sig = token.rpartition(".")
    other = signer.sign(link(customer_id="c-2")).rpartition(".")[0]
    for bad in (f"{other}.{sig}", token[:-2], "not-a-token", "", token + "x"):
        with pytest.raises(LinkInvalid):
            signer.verify(bad, now=NOW)
    with pytest.raises(LinkInvalid):
        LinkSigner(secret="some-other-secret").verify(token, now=NOW)
    with pytest.raises(LinkExpired):
        signer.verify(token, now=NOW + timedelta(days=1))
    assert payload


def test_rotated_secrets_still_verify_old_links() -> None:
    old = LinkSigner(secret="the-old-secret-value").sign(link())
    rotated = LinkSigner(secret="the-new-secret-value", previous=["the-old-secret-value"])
    assert rotated.verify(old, now=NOW).customer_id == "c-1"
    fresh = rotated.sign(link())
    with pytest.raises(LinkInvalid):
        LinkSigner(secret="the-old-secret-value").verify(fresh, now=NOW)


# ---- SMS ----------------------------------------------------------------------------------------

# Vectors from Twilio's own helper-library tests (twilio-python tests/unit/test_request_validator.py).
TWILIO_URI = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("Caller", "+14158675309"),
]


def test_twilio_signature_matches_twilios_reference_vectors() -> None:
    assert compute_signature("12345", TWILIO_URI, TWILIO_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    dup = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert compute_signature("12345", TWILIO_URI, dup) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("url", "signature", "valid"),
    [
        (TWILIO_URI, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", True),
        (TWILIO_URI.replace(".com", ".com:1234"), "RSOYDt4T1cUTdK1PDd93/VVr8B8=", True),
        (TWILIO_URI, "kvajT1Ptam85bY51eRf/AJRuM3w=", True),  # signed with :443
        (TWILIO_URI, "RSOYDt4T1cUTdK1PDd93/VVr8B9=", False),
        (TWILIO_URI, None, False),
        ("https://mycompany.com/other.php", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", False),
    ],
)
def test_twilio_signature_validation(url: str, signature: str | None, valid: bool) -> None:
    assert signature_valid(auth_token="12345", url=url, params=TWILIO_PARAMS, signature=signature) is valid


@pytest.mark.parametrize(
    ("metric", "scale", "body", "score", "comment"),
    [
        ("csat", "1-5", "4", 4, None),
        ("csat", "1-5", "4 great service", 4, "great service"),
        ("csat", "1-5", "  5!  merci ", 5, "merci"),
        ("csat", "1-5", "3/5", 3, None),
        ("nps", "0-10", "10 love it", 10, "love it"),
        ("nps", "0-10", "0", 0, None),
        ("csat", "yes-no", "yes", 1, None),
        ("csat", "yes-no", "No, too slow", 0, "too slow"),
        ("csat", "1-5", "satisfied", 4, None),
        ("csat", "1-3", "happy thanks", 3, "thanks"),
    ],
)
def test_sms_replies(metric: str, scale: str, body: str, score: int, comment: str | None) -> None:
    reply = parse_reply(get_scale(Metric(metric), scale), body)
    assert (reply.score, reply.comment) == (score, comment)


@pytest.mark.parametrize("body", ["", "   ", "six", "6", "45", "-1", "great 4"])
def test_unreadable_sms_replies(body: str) -> None:
    with pytest.raises(ScaleError):
        parse_reply(get_scale(Metric.CSAT, "1-5"), body)


def test_phone_numbers_and_twiml() -> None:
    assert normalize_phone("+33 6 12-34.56 78") == "+33612345678"
    assert normalize_phone("0033612345678") == "+33612345678"
    with pytest.raises(ValueError, match=r"E\.164"):
        normalize_phone("0612345678")
    assert twiml("a < b & c") == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>a &lt; b &amp; c</Message></Response>'
    )
    assert twiml(None).endswith("<Response/>")
