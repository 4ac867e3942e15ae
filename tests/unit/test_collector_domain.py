"""Pure collector pieces: every scale through normalisation, fingerprints, keys, limits, links, SMS."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from pydantic import ValidationError

from services.collector.access import client_ip
from services.collector.domain import (
    RatingIn,
    RatingRejected,
    Trust,
    fingerprint,
    identity_secrets,
    normalize,
    normalize_encoded,
    provenance_of,
)
from services.collector.links import EmailLink, LinkExpired, LinkInvalid, LinkSigner
from services.collector.ports import Source
from services.collector.ratelimit import KeyedLimiter, retry_after
from services.collector.settings import CollectorSettings
from services.collector.sms import compute_signature, normalize_phone, parse_reply, signature_valid, twiml
from shared.events import Identity, KeyKind, Provenance, RatingSubmitted
from shared.identity.sourcekeys import derive_identity_secret, sign_customer
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


# ---- claims and facts -----------------------------------------------------------------------------

CLAIMING: dict[str, Any] = {
    "customer": {"id": "c1", "email": "outsider@evil.example", "phone": "+33612345678", "locale": "fr"},
    "consent": {"contact": True, "review": True},
    "account": {"id": "acc-1", "tier": "strategic", "value": 900000},
}
SECRET = derive_identity_secret(platform_key="p" * 32, source_id="shop", version=1)


def proved(customer_id: str = "c1", *, secret: str = SECRET, ttl_s: int = 3600) -> str:
    return sign_customer(
        identity_secret=secret, customer_id=customer_id, expires_at=int(NOW.timestamp()) + ttl_s
    )


def test_a_publishable_key_posts_claims_kept_apart_from_the_facts() -> None:
    body = rating(**CLAIMING)
    provenance = provenance_of(body, Trust(KeyKind.PUBLISHABLE, (SECRET,)), now=NOW)
    assert provenance == Provenance(key_kind=KeyKind.PUBLISHABLE, identity=Identity.CLAIMED)
    event = normalize(body, received_at=NOW, provenance=provenance)
    assert event.customer.email is None and event.customer.phone is None
    assert event.customer.locale == "fr"  # a language preference is no way to reach anyone
    assert not event.consent.contact and not event.consent.review and event.account is None
    assert event.claims is not None and event.claims.email == "outsider@evil.example"
    assert event.claims.account is not None and event.claims.account.tier == "strategic"
    assert event.claims.consent is not None and event.claims.consent.contact
    assert not event.customer_verified and event.score == 4  # still counted as an answer


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.TOKEN, KeyKind.NONE, KeyKind.EMAIL_LINK])
def test_server_side_posts_are_facts(kind: KeyKind) -> None:
    body = rating(**CLAIMING)
    event = normalize(body, received_at=NOW, provenance=provenance_of(body, Trust(kind), now=NOW))
    assert event.customer.email == "outsider@evil.example" and event.consent.contact
    assert event.account is not None and event.account.tier == "strategic"
    assert event.claims is None and event.customer_verified


def test_a_valid_proof_makes_the_customer_a_fact_but_not_the_claims() -> None:
    body = rating(**{**CLAIMING, "customer": {**CLAIMING["customer"], "proof": proved()}})
    provenance = provenance_of(body, Trust(KeyKind.PUBLISHABLE, ("older-secret", SECRET)), now=NOW)
    assert provenance.identity is Identity.VERIFIED
    event = normalize(body, received_at=NOW, provenance=provenance)
    assert event.customer_verified and event.customer.email is None and not event.consent.contact
    assert "proof" not in event.model_dump(mode="json")["customer"]  # a bearer credential: not published


@pytest.mark.parametrize(
    ("proof", "message"),
    [
        ("v1.123.abc", "is not a proof"),
        (proved("someone-else"), "does not match"),
        (proved(secret="sis_other"), "does not match"),
        (proved(ttl_s=-5), "has expired"),
        (proved(ttl_s=30 * 86400), "more than 7 days"),
    ],
)
def test_a_proof_that_does_not_verify_refuses_the_rating_at_its_field(proof: str, message: str) -> None:
    body = rating(customer={"id": "c1", "proof": proof})
    with pytest.raises(RatingRejected) as caught:
        provenance_of(body, Trust(KeyKind.PUBLISHABLE, (SECRET,)), now=NOW)
    assert caught.value.field == "customer.proof" and message in caught.value.message


def test_the_previous_identity_secret_verifies_only_during_the_grace_period() -> None:
    rotated = Source(source_id="shop", name="Shop", identity_version=2, identity_rotated_at=NOW)
    grace = timedelta(days=7)
    both = identity_secrets(platform_key="p" * 32, source=rotated, now=NOW + timedelta(days=1), grace=grace)
    assert both == (derive_identity_secret(platform_key="p" * 32, source_id="shop", version=2), SECRET)
    later = identity_secrets(platform_key="p" * 32, source=rotated, now=NOW + timedelta(days=8), grace=grace)
    assert later == both[:1]


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


def test_a_batch_costs_one_token_per_rating_even_past_the_burst() -> None:
    now = [0.0]
    limiter = KeyedLimiter(rate_per_s=100, burst=400, clock=lambda: now[0])
    assert limiter.acquire("k", cost=500) == 0  # a full bucket lets one oversized batch through...
    assert limiter.acquire("k") == pytest.approx(1.01)  # ...and owes its 100 extra tokens
    now[0] = 5.0  # 500 tokens refilled since: the bucket is full again (400)
    assert limiter.acquire("k", cost=300) == 0
    assert limiter.acquire("k", cost=300) == pytest.approx(2.0)  # 100 left: 200 more at 100/s


def test_limiter_memory_is_bounded() -> None:
    limiter = KeyedLimiter(rate_per_s=1, burst=1, max_clients=100, clock=lambda: 0.0)
    for i in range(1000):
        assert limiter.acquire(f"ip-{i}") == 0  # every client's first request uses its one token
    assert limiter.acquire("ip-999") > 0  # recently seen: still remembered, bucket empty
    assert limiter.acquire("ip-0") == 0  # forgotten long ago: starts again with a full bucket


def test_forwarded_for_only_from_trusted_proxies() -> None:
    settings = CollectorSettings(environment="test", trusted_proxies=["10.0.0.0/8"])
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


def test_links_are_hmac_sha256_and_old_sha1_links_only_with_the_grace_setting() -> None:
    sha256 = LinkSigner(secret="a-long-enough-secret").sign(link())
    sha1 = str(
        URLSafeSerializer(["a-long-enough-secret"], salt="csat.email-link.v1").dumps(link().to_claims())
    )
    assert len(sha256.rsplit(".", 1)[1]) == 43  # 32-byte HMAC-SHA256, base64url
    assert len(sha1.rsplit(".", 1)[1]) == 27  # 20-byte HMAC-SHA1
    with pytest.raises(LinkInvalid):
        LinkSigner(secret="a-long-enough-secret").verify(sha1, now=NOW)
    graced = LinkSigner(secret="a-long-enough-secret", accept_sha1=True)
    assert graced.verify(sha1, now=NOW) == link() and graced.verify(sha256, now=NOW) == link()
    with pytest.raises(LinkExpired):
        graced.verify(sha1, now=NOW + timedelta(days=2))  # an old link still ends at its own expiry


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


def test_the_documented_server_side_proof_verifies() -> None:
    """docs/collector.md shows sites how to sign customer ids: its Python example must make valid proofs."""
    doc = (Path(__file__).parents[2] / "docs" / "collector.md").read_text(encoding="utf-8")
    example = textwrap.dedent(doc.split("   ```python\n", 1)[1].split("   ```\n", 1)[0])
    scope: dict[str, Any] = {}
    exec(compile(example, "docs/collector.md", "exec"), scope)  # noqa: S102 - our own documentation
    proof = scope["customer_proof"](SECRET, "cus_1042")
    body = rating(customer={"id": "cus_1042", "proof": proof})
    now = datetime.now(UTC)
    assert provenance_of(body, Trust(KeyKind.PUBLISHABLE, (SECRET,)), now=now).identity is Identity.VERIFIED


# --- normalize_encoded: the JSON API's hot path writes the event's bytes without building the model ---

_text = st.text(min_size=1, max_size=12)
_ENCODED_INPUTS = st.fixed_dictionaries(
    {
        "metric": st.sampled_from(["csat", "nps", "ces"]),
        "score": st.one_of(
            st.integers(min_value=-1, max_value=11),
            st.sampled_from(["satisfied", "very satisfied", "9", " 3 ", "happy", "yes", "great"]),
            st.booleans(),
            st.sampled_from([4.0, 2.5]),
        ),
        "customer": st.fixed_dictionaries(
            {"id": st.sampled_from(["c1", " spaced ", "cüs-ü"])},
            optional={
                "email": st.sampled_from(["ana@example.com", "Bo@Example.org"]),
                "phone": st.just("+33612345678"),
                "locale": st.sampled_from(["fr", "en-GB"]),
                "timezone": st.just("Europe/Paris"),
            },
        ),
    },
    optional={
        "rating_id": st.sampled_from(["chat-1", "x.y:z"]),
        "scale": st.sampled_from(["1-5", "1-3", "yes-no", "0-10", "1-7", "smileys", "stars"]),
        "segment": st.dictionaries(st.sampled_from(["store", "channel", "agent"]), _text, max_size=3),
        "touchpoint": _text,
        "comment": st.one_of(st.just("   "), st.text(max_size=30)),
        "account": st.fixed_dictionaries(
            {},
            optional={
                "id": _text,
                "tier": st.sampled_from(["Gold", "strategic"]),
                "value": st.one_of(
                    st.integers(min_value=0, max_value=10**20), st.floats(min_value=0, allow_nan=False)
                ),
            },
        ),
        "occurred_at": st.sampled_from(
            [
                "2026-11-23T09:30:00Z",
                "2026-11-23T11:00:00.5+02:00",
                "2026-11-23T10:04:00Z",
                "2025-01-01T00:00:00Z",
            ]
        ),
        "consent": st.fixed_dictionaries({}, optional={"contact": st.booleans(), "review": st.booleans()}),
        "survey_id": _text,
    },
)
_TRUSTS = [
    None,
    Trust(KeyKind.SECRET),
    Trust(KeyKind.PUBLISHABLE, identity_secrets=("s" * 64,)),
    Trust(KeyKind.EMAIL_LINK),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=_ENCODED_INPUTS,
    trust=st.sampled_from(_TRUSTS),
    keyed=st.booleans(),
    received=st.sampled_from([NOW, NOW.replace(microsecond=123400), NOW + timedelta(microseconds=1)]),
)
def test_normalize_encoded_writes_the_model_paths_bytes_and_fingerprint(
    body: dict[str, Any], trust: Trust | None, keyed: bool, received: datetime
) -> None:
    try:
        parsed = RatingIn.model_validate(body)
    except ValidationError:
        return  # refused before normalisation, the same for both paths
    prov = provenance_of(parsed, trust, now=received) if trust is not None else None
    args: dict[str, Any] = {"received_at": received, "rating_id": "k-1", "source": "shop", "provenance": prov}
    try:
        event = normalize(parsed, **args)
    except RatingRejected as exc:
        refused = (exc.field, exc.message)
        with pytest.raises(RatingRejected) as lean:
            normalize_encoded(parsed, keyed=keyed, **args)
        assert (lean.value.field, lean.value.message) == refused
        return
    encoded = normalize_encoded(parsed, keyed=keyed, **args)
    assert encoded.value == RatingSubmitted.__pydantic_serializer__.to_json(event)
    assert (encoded.rating_id, encoded.metric, encoded.customer_id) == (
        event.rating_id,
        event.metric,
        event.customer.id,
    )
    expected = fingerprint(event, client_occurred_at=parsed.occurred_at) if keyed else None
    assert encoded.fingerprint == expected


def test_normalize_encoded_without_an_id_draws_a_fresh_one() -> None:
    a = normalize_encoded(rating(), received_at=NOW, keyed=False)
    b = normalize_encoded(rating(), received_at=NOW, keyed=False)
    assert a.rating_id != b.rating_id and a.fingerprint is None
    assert RatingSubmitted.model_validate_json(a.value).rating_id == a.rating_id
