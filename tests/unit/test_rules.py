"""Rule files and decisions: validation errors, matchers, the default playbook, cooldown and opt-out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.actions.engine import CustomerContext, Decision, History, build_facts, decide
from services.actions.rules import RuleFileError, load_rules_file, load_rules_text, matches, notification_id
from services.actions.settings import DEFAULT_RULES
from services.collector.domain import RatingIn, normalize
from shared.events import Channel, RatingSubmitted

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def rating(
    score: int, *, metric: str = "csat", scale: str = "1-5", contact: bool = True, **extra: object
) -> RatingSubmitted:
    body = {
        "metric": metric,
        "scale": scale,
        "score": score,
        "rating_id": f"r-{metric}-{score}",
        "customer": {"id": "cus-1", "email": "ana@example.com"},
        "consent": {"contact": contact},
        **extra,
    }
    return normalize(RatingIn.model_validate(body), received_at=NOW)


@pytest.mark.parametrize(
    ("matcher", "value", "result"),
    [
        ("negative", "negative", True),
        ("negative", "positive", False),
        (["csat", "nps"], "nps", True),
        ({"lte": 2}, 2, True),
        ({"lte": 2}, 3, False),
        ({"gte": 0.9, "lte": 1}, 1.0, True),
        ({"in": ["gold", "strategic"]}, "strategic", True),
        ({"not_in": ["gold"]}, None, True),
        ({"present": True}, "text", True),
        ({"present": True}, None, False),
        ({"present": False}, "", True),
        ({"gt": 5}, None, False),
        ({"ne": "x"}, "y", True),
    ],
)
def test_matchers(matcher: object, value: object, result: bool) -> None:
    assert matches(matcher, value) is result


def test_default_rules_load() -> None:
    rules = load_rules_file(DEFAULT_RULES)
    assert {r.id for r in rules.rules} >= {"low-score-csm-alert", "promoter-thank-you"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "rules: [{id: a, actions: [{type: csm_alert, template: x}]},"
            " {id: a, actions: [{type: csm_alert, template: x}]}]",
            "used twice",
        ),
        ("rules: [{id: bad-one, actions: [{type: fax, template: x}]}]", "rule bad-one: actions.0.type"),
        (
            "rules: [{id: r1, when: {score: {around: 3}}, actions: [{type: csm_alert, template: x}]}]",
            "unknown operator",
        ),
        ("rules: [{id: r2, actions: []}]", "rule r2: actions"),
        ("rules: [{id: r3, cooldown: soon, actions: [{type: csm_alert, template: x}]}]", "rule r3: cooldown"),
        ("rules: [{id: r4, actions: [{type: csm_alert, template: x}], colour: red}]", "rule r4: colour"),
        ("rules: {", "not valid YAML"),
    ],
)
def test_rule_file_errors_name_the_rule_and_field(text: str, fragment: str) -> None:
    with pytest.raises(RuleFileError, match=fragment):
        load_rules_text(text)


def _decide(
    r: RatingSubmitted, *, ctx: CustomerContext | None = None, fired: dict[str, datetime] | None = None
) -> list[Decision]:
    return decide(
        rules=load_rules_file(DEFAULT_RULES),
        rating=r,
        ctx=ctx,
        history=History(),
        last_fired=fired or {},
        now=NOW,
        default_csm_email="csm@example.com",
    )


def test_low_score_alerts_the_csm_and_emails_the_customer() -> None:
    decisions = _decide(rating(1))
    by_rule = {d.rule_id: d for d in decisions}
    alert = by_rule["low-score-csm-alert"].notification
    assert alert is not None and alert.channel is Channel.EMAIL
    assert alert.recipient.email == "csm@example.com"
    assert alert.transactional and alert.priority == "high"
    assert alert.context["customer"]["email"] == "ana@example.com"
    follow = by_rule["low-score-customer-email"].notification
    assert follow is not None and follow.recipient.email == "ana@example.com"
    assert "promoter-thank-you" not in by_rule


def test_owner_csm_from_context_receives_the_alert() -> None:
    ctx = CustomerContext(customer_id="cus-1", owner_email="owner@example.com", tier="strategic")
    alert = next(d for d in _decide(rating(2), ctx=ctx) if d.rule_id == "low-score-csm-alert").notification
    assert alert is not None and alert.recipient.email == "owner@example.com"


def test_nps_detractor_alerts() -> None:
    assert any(d.rule_id == "low-score-csm-alert" for d in _decide(rating(5, metric="nps", scale="0-10")))


def test_promoter_thanked_only_with_consent() -> None:
    assert [d.rule_id for d in _decide(rating(5))] == ["promoter-thank-you"]
    skipped = _decide(rating(5, contact=False))
    assert skipped == []


def test_neutral_score_fires_no_default_rule() -> None:
    assert _decide(rating(3)) == []


def test_cooldown_skips_customer_messages_but_not_csm_alerts() -> None:
    fired = {
        "low-score-customer-email": NOW - timedelta(days=1),
        "low-score-csm-alert": NOW - timedelta(minutes=1),
    }
    decisions = {d.rule_id: d for d in _decide(rating(1), fired=fired)}
    assert decisions["low-score-customer-email"].skipped == "cooldown"
    assert decisions["low-score-csm-alert"].notification is not None


def test_opt_out_blocks_customer_messages_only() -> None:
    ctx = CustomerContext(customer_id="cus-1", opted_out=True)
    decisions = {d.rule_id: d for d in _decide(rating(1), ctx=ctx)}
    assert decisions["low-score-customer-email"].skipped == "opted_out"
    assert decisions["low-score-csm-alert"].notification is not None


def test_notification_ids_are_deterministic() -> None:
    assert notification_id("r", "x", 0) == notification_id("r", "x", 0)
    assert notification_id("r", "x", 0) != notification_id("r", "x", 1)
    a = _decide(rating(1))
    b = _decide(rating(1))
    assert [d.notification.notification_id for d in a if d.notification] == [
        d.notification.notification_id for d in b if d.notification
    ]


def test_facts_include_segments_and_context_override() -> None:
    r = rating(1, segment={"store": "paris-1"}, account={"tier": "smb", "value": 10})
    facts = build_facts(r, CustomerContext(customer_id="cus-1", tier="strategic"), History(negative_30d=3))
    assert facts["segment.store"] == "paris-1"
    assert facts["account.tier"] == "strategic"
    assert facts["history.negative_30d"] == 3
    assert facts["has_comment"] is False
