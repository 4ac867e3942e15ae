"""Decisions from the default playbook: alerts and SLAs, re-surveys, nurture, fatigue, consent, history."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.actions.engine import Decision, Fatigue, Policy, decide, decide_segment
from services.actions.facts import CustomerContext, History, PastRating, build_facts, slope, summarize_history
from services.actions.rules import RuleSet, load_rules_file, parse_rules
from services.actions.settings import DEFAULT_RULES
from services.actions.verbatims import Analysis, load_taxonomy_file
from services.collector.domain import RatingIn, normalize
from shared.events import Channel, DriftDetails, RatingSubmitted, SegmentAlert
from shared.scales import Metric
from shared.verbatims import DEFAULT_THEMES

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULTS = load_rules_file(DEFAULT_RULES)
TAXONOMY = load_taxonomy_file(DEFAULT_THEMES)
POLICY = Policy(
    default_csm_email="csm@example.com",
    theme_owners={t: o for t in TAXONOMY.theme_ids if (o := TAXONOMY.owner(t))},
    theme_default_owner=TAXONOMY.default_owner,
    segment_owners={"store=paris-1": "paris1@example.com", "channel=*": "channels@example.com"},
)


def rating(
    score: int,
    *,
    metric: str = "csat",
    scale: str = "1-5",
    contact: bool = True,
    review: bool = False,
    rid: str | None = None,
    **extra: object,
) -> RatingSubmitted:
    body = {
        "metric": metric,
        "scale": scale,
        "score": score,
        "rating_id": rid or f"r-{metric}-{score}",
        "customer": {"id": "cus-1", "email": "ana@example.com", "phone": "+33612345678"},
        "consent": {"contact": contact, "review": review},
        **extra,
    }
    return normalize(RatingIn.model_validate(body), received_at=NOW)


def run(
    r: RatingSubmitted,
    *,
    rules: RuleSet = DEFAULTS,
    ctx: CustomerContext | None = None,
    history: History | None = None,
    fatigue: Fatigue | None = None,
    policy: Policy = POLICY,
) -> list[Decision]:
    analysis = TAXONOMY.analyze(r.comment, locale=r.customer.locale) if r.comment else None
    return decide(
        rules=rules,
        rating=r,
        ctx=ctx,
        history=history or History(ratings_30d=1),
        now=NOW,
        policy=policy,
        fatigue=fatigue,
        analysis=analysis,
    )


def by_rule(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.rule_id: d for d in decisions}


def test_low_score_alerts_the_csm_emails_resurveys_and_educates() -> None:
    d = by_rule(run(rating(1)))
    assert set(d) == {
        "low-score-csm-alert",
        "low-score-customer-email",
        "low-score-resurvey",
        "low-value-education",
    }
    alert = d["low-score-csm-alert"]
    note = alert.notification
    assert note is not None and note.channel is Channel.EMAIL and note.template == "csm_alert"
    assert note.recipient.email == "csm@example.com" and note.transactional
    assert note.context["customer"]["email"] == "ana@example.com"
    assert alert.alert is not None and alert.alert.due_at is None and alert.timers == ()
    follow = d["low-score-customer-email"].notification
    assert follow is not None and follow.recipient.email == "ana@example.com" and not follow.transactional
    resurvey = d["low-score-resurvey"]
    assert resurvey.outcome == "scheduled" and resurvey.notification is None
    assert [(t.kind, t.due_at - NOW) for t in resurvey.timers] == [("send", timedelta(hours=2))]
    education = d["low-value-education"]
    assert education.enrolment is not None and education.enrolment.steps == 3
    assert [t.due_at - NOW for t in education.timers] == [timedelta(days=n) for n in (1, 4, 11)]
    assert [t.payload["sequence"]["step"] for t in education.timers] == [1, 2, 3]


@pytest.mark.parametrize(
    "account", [{"tier": "strategic"}, {"tier": "enterprise"}, {"tier": "smb", "value": 60000}]
)
def test_strategic_account_gets_a_24h_sla_that_escalates_instead_of_education(
    account: dict[str, Any],
) -> None:
    d = by_rule(run(rating(2, account=account)))
    assert "low-score-csm-alert" not in d and "low-value-education" not in d
    alert = d["strategic-account-alert"]
    assert alert.alert is not None and alert.alert.priority == "high"
    assert alert.alert.due_at == NOW + timedelta(hours=24)
    assert [(t.kind, t.due_at, t.ref) for t in alert.timers] == [
        ("sla_escalation", NOW + timedelta(hours=24), alert.alert.alert_id)
    ]
    note = alert.notification
    assert note is not None and note.context["alert"]["due_at"] == (NOW + timedelta(hours=24)).isoformat()


def test_stored_context_tier_and_owner_win_over_the_rating() -> None:
    ctx = CustomerContext(customer_id="cus-1", owner_email="owner@example.com", tier="strategic")
    d = by_rule(run(rating(2, account={"tier": "smb"}), ctx=ctx))
    note = d["strategic-account-alert"].notification
    assert note is not None and note.recipient.email == "owner@example.com"


def test_nps_detractor_alerts() -> None:
    assert "low-score-csm-alert" in by_rule(run(rating(5, metric="nps", scale="0-10")))


def test_third_low_score_in_30_days_is_a_churn_risk() -> None:
    d = by_rule(run(rating(1), history=History(ratings_30d=3, negative_30d=3)))
    assert "churn-risk-alert" in d and "low-score-csm-alert" not in d
    assert "churn-risk-alert" not in by_rule(run(rating(1), history=History(ratings_30d=2, negative_30d=2)))


def test_declining_trend_alerts_even_without_a_low_score() -> None:
    d = by_rule(run(rating(3), history=History(ratings_30d=4, declining=True, trend=-0.2)))
    assert "churn-risk-alert" in d


def test_promoter_is_thanked_now_and_invited_to_refer_later() -> None:
    thanks, referral = [d for d in run(rating(5)) if d.rule_id == "promoter-thank-you"]
    assert [n.template for n in thanks.notifications] == ["thank_you"]
    assert referral.outcome == "scheduled"
    assert [(t.payload["template"], t.due_at - NOW) for t in referral.timers] == [
        ("referral_invite", timedelta(days=2))
    ]


def test_promoter_without_consent_gets_nothing() -> None:
    assert run(rating(5, contact=False)) == []


def test_middling_score_starts_the_education_path() -> None:
    assert set(by_rule(run(rating(3)))) == {"passive-education"}
    assert set(by_rule(run(rating(4)))) == {"passive-education"}
    assert set(by_rule(run(rating(8, metric="nps", scale="0-10")))) == {"passive-education"}


@pytest.mark.parametrize(
    ("score", "metric", "scale"),
    [(s, "csat", "1-5") for s in range(1, 6)] + [(s, "nps", "0-10") for s in range(11)],
)
def test_review_invitation_goes_to_every_consenting_respondent_whatever_the_score(
    score: int, metric: str, scale: str
) -> None:
    """No review gating: unhappy customers who agreed are invited exactly like happy ones."""
    decisions = run(rating(score, metric=metric, scale=scale, contact=False, review=True))
    invites = [d for d in decisions if d.action.value == "review_invite"]
    assert len(invites) == 1 and invites[0].outcome == "scheduled"
    assert invites[0].timers[0].payload["template"] == "review_invite"
    assert invites[0].timers[0].payload["context"]["rating"]["score"] == score


def test_no_review_invitation_without_review_consent() -> None:
    assert not [d for d in run(rating(5, review=False)) if d.action.value == "review_invite"]


def test_every_default_review_rule_is_free_of_score_conditions() -> None:
    """Whatever the scores, the set of ratings that get a review invitation is the same."""
    for score in range(1, 6):
        facts = build_facts(rating(score, contact=False, review=True), None, History())
        assert facts["consent.review"] is True
    invited = {
        score: any(d.action.value == "review_invite" for d in run(rating(score, contact=False, review=True)))
        for score in range(1, 6)
    }
    assert set(invited.values()) == {True}


def test_cooldown_skips_customer_messages_but_not_csm_alerts() -> None:
    fired = {"low-score-customer-email": NOW - timedelta(days=1), "low-score-csm-alert": NOW}
    d = by_rule(run(rating(1), fatigue=Fatigue(last_fired=fired)))
    assert d["low-score-customer-email"].skipped == "cooldown"
    assert d["low-score-csm-alert"].notification is not None
    old = {"low-score-customer-email": NOW - timedelta(days=8)}
    assert (
        by_rule(run(rating(1), fatigue=Fatigue(last_fired=old)))["low-score-customer-email"].skipped is None
    )


def test_opt_out_blocks_every_customer_message_but_not_internal_alerts() -> None:
    ctx = CustomerContext(customer_id="cus-1", opted_out=True)
    decisions = run(rating(1, comment="Livraison en retard, très déçu"), ctx=ctx)
    customer = [d for d in decisions if d.customer_facing]
    assert customer and {d.skipped for d in customer} == {"opted_out"}
    internal = by_rule([d for d in decisions if not d.customer_facing])
    assert set(internal) == {"low-score-csm-alert", "critical-comment-theme-alert"}
    assert all(d.notifications for d in internal.values())


def test_daily_cap_stops_customer_messages_at_decision_time() -> None:
    capped = by_rule(run(rating(1), fatigue=Fatigue(sent_24h=3)))
    assert capped["low-score-customer-email"].skipped == "daily_cap"
    assert capped["low-score-csm-alert"].notification is not None
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "two",
                    "actions": [
                        {"type": "customer_email", "template": "thank_you"},
                        {"type": "customer_sms", "template": "thank_you"},
                    ],
                }
            ]
        }
    )
    decisions = run(rating(5), rules=rules, fatigue=Fatigue(sent_24h=1), policy=Policy(daily_cap=2))
    assert [d.outcome for d in decisions] == ["notified", "skipped_daily_cap"]


def test_stored_consent_overrides_the_rating() -> None:
    ctx = CustomerContext(customer_id="cus-1", consent={"contact": False})
    assert "low-score-customer-email" not in by_rule(run(rating(1, contact=True), ctx=ctx))
    ctx = CustomerContext(customer_id="cus-1", consent={"contact": True})
    assert "low-score-customer-email" in by_rule(run(rating(1, contact=False), ctx=ctx))


def test_no_consent_is_enforced_even_when_a_rule_forgets_the_condition() -> None:
    rules = parse_rules(
        {"rules": [{"id": "x", "actions": [{"type": "customer_email", "template": "thank_you"}]}]}
    )
    assert [d.outcome for d in run(rating(5, contact=False), rules=rules)] == ["skipped_no_consent"]


def test_customer_without_address_is_skipped() -> None:
    rules = parse_rules(
        {"rules": [{"id": "x", "actions": [{"type": "customer_sms", "template": "thank_you"}]}]}
    )
    r = normalize(
        RatingIn.model_validate(
            {
                "metric": "csat",
                "scale": "1-5",
                "score": 5,
                "customer": {"id": "c"},
                "consent": {"contact": True},
            }
        ),
        received_at=NOW,
    )
    assert [d.outcome for d in run(r, rules=rules)] == ["skipped_no_recipient"]


def test_already_enrolled_customer_is_not_enrolled_twice() -> None:
    d = by_rule(run(rating(3), fatigue=Fatigue(active_sequences=frozenset({"education"}))))
    assert d["passive-education"].skipped == "already_enrolled"


def test_immediate_resurvey_sends_the_open_question_and_arms_the_no_answer_timer() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "ask",
                    "actions": [{"type": "resurvey", "follow_up_after": "6h", "follow_up_to": "s@x.io"}],
                }
            ]
        }
    )
    policy = Policy(survey_url_template="https://s.example.com/{survey_id}")
    (d,) = run(rating(1), rules=rules, policy=policy)
    note = d.notification
    assert note is not None and note.template == "resurvey_open_question"
    (timer,) = d.timers
    assert timer.kind == "resurvey_no_answer" and timer.due_at == NOW + timedelta(hours=6)
    assert timer.payload["to"] == "s@x.io"
    assert note.context["survey"] == {"id": timer.ref, "url": f"https://s.example.com/{timer.ref}"}


def test_ids_placed_in_survey_and_alert_urls_are_percent_encoded() -> None:
    rules = parse_rules({"rules": [{"id": "ask", "actions": [{"type": "resurvey"}]}]})
    policy = Policy(survey_url_template="https://s.example.com/s/{survey_id}?c={customer_id}")
    odd = rating(1, customer={"id": "a/b?c=d&e", "email": "ana@example.com"})
    (d,) = run(odd, rules=rules, policy=policy)
    assert d.notification is not None
    url = d.notification.context["survey"]["url"]
    assert url.endswith("?c=a%2Fb%3Fc%3Dd%26e") and url.count("?") == 1
    alerting = parse_rules({"rules": [{"id": "tell", "actions": [{"type": "csm_alert"}]}]})
    (alert,) = run(
        rating(1), rules=alerting, policy=Policy(alert_url_template="https://a.example.com/{alert_id}")
    )
    assert alert.notification is not None
    assert (
        alert.notification.context["alert"]["ack_url"]
        == f"https://a.example.com/{alert.notification.notification_id}"
    )


def test_critical_comment_goes_to_each_owning_team() -> None:
    d = by_rule(run(rating(1, comment="Trop cher et livraison en retard, très déçu")))
    notes = d["critical-comment-theme-alert"].notifications
    assert {n.recipient.email for n in notes} == {"logistics@example.com", "pricing@example.com"}
    assert all(n.template == "theme_alert" and n.transactional for n in notes)
    assert len({n.notification_id for n in notes}) == 2


def test_positive_comment_on_a_low_score_is_not_critical() -> None:
    assert "critical-comment-theme-alert" not in by_rule(run(rating(2, comment="Staff was friendly")))


def test_ids_are_deterministic_across_replays() -> None:
    def ids(ds: list[Decision]) -> list[str]:
        return [n.notification_id for d in ds for n in d.notifications] + [
            t.timer_id for d in ds for t in d.timers
        ]

    assert ids(run(rating(1))) == ids(run(rating(1)))
    assert ids(run(rating(1))) != ids(run(rating(1, rid="another")))


def test_facts_include_segments_usage_and_context_override() -> None:
    r = rating(1, segment={"store": "paris-1"}, account={"tier": "smb", "value": 10})
    ctx = CustomerContext(
        customer_id="cus-1", tier="strategic", attributes={"seats": 40, "usage": {"weekly": 3}}
    )
    facts = build_facts(r, ctx, History(negative_30d=3), Analysis(("price",), "negative", -1.0, "en"))
    assert facts["segment.store"] == "paris-1"
    assert facts["account.tier"] == "strategic"
    assert facts["customer.seats"] == 40 and facts["customer.usage.weekly"] == 3
    assert facts["history.negative_30d"] == 3 and facts["history.low_scores_30d"] == 3
    assert facts["has_comment"] is False and facts["themes"] == ["price"]
    assert facts["comment.sentiment"] is None  # no comment on this rating


# ---- history ---------------------------------------------------------------------------------------
def past(*items: tuple[str, int, float, str]) -> list[PastRating]:
    return [PastRating(rid, NOW - timedelta(days=days), norm, sent) for rid, days, norm, sent in items]


def test_history_counts_the_window_including_the_current_rating() -> None:
    rows = past(("a", 40, 0.0, "negative"), ("b", 20, 0.0, "negative"), ("c", 5, 0.25, "negative"))
    h = summarize_history(rows, rating_id="now", occurred_at=NOW, normalized=0.0, sentiment="negative")
    assert (h.ratings_30d, h.negative_30d, h.positive_30d) == (3, 3, 0)
    assert h.previous_sentiment == "negative" and h.days_since_previous == 5.0


def test_history_ignores_ratings_after_the_one_decided_on() -> None:
    later = PastRating("later", NOW + timedelta(hours=1), 0.0, "negative")
    rows = [*past(("old", 3, 1.0, "positive")), later]
    h = summarize_history(rows, rating_id="now", occurred_at=NOW, normalized=1.0, sentiment="positive")
    assert h.ratings_30d == 2 and h.negative_30d == 0


@pytest.mark.parametrize(
    ("scores", "declining"),
    [
        ([1.0, 0.75, 0.5, 0.25], True),
        ([1.0, 1.0, 0.75], True),
        ([0.25, 0.5, 0.75, 1.0], False),
        ([0.75, 0.75, 0.75, 0.75], False),
        ([1.0, 0.25], False),  # two ratings are not a trend
        ([0.5, 1.0, 0.25, 1.0, 0.5], False),
    ],
)
def test_declining_trend(scores: list[float], declining: bool) -> None:
    n = len(scores)
    rows = [PastRating(f"r{i}", NOW - timedelta(days=n - i), s, "neutral") for i, s in enumerate(scores[:-1])]
    h = summarize_history(rows, rating_id="now", occurred_at=NOW, normalized=scores[-1], sentiment="neutral")
    assert h.declining is declining


def test_slope() -> None:
    assert slope([1.0, 0.75, 0.5]) == pytest.approx(-0.25)
    assert slope([0.5, 0.5]) == 0.0


# ---- segment alerts --------------------------------------------------------------------------------
def segment_alert(attributes: dict[str, str], key: str) -> SegmentAlert:
    return SegmentAlert(
        alert_id=f"sa-{key}",
        metric=Metric.CSAT,
        window="7d",
        segment=key,
        segment_attributes=attributes,
        reason="below_threshold",
        score=61.0,
        previous=78.0,
        threshold=70.0,
        responses=120,
        computed_at=NOW,
    )


@pytest.mark.parametrize(
    ("attributes", "owner"),
    [
        ({"store": "paris-1"}, "paris1@example.com"),
        ({"channel": "chat", "store": "paris-1"}, "paris1@example.com"),
        ({"channel": "chat"}, "channels@example.com"),
        ({"store": "lyon-2"}, None),
    ],
)
def test_segment_alert_goes_to_the_segment_owner(attributes: dict[str, str], owner: str | None) -> None:
    key = "|".join(f"{k}={v}" for k, v in sorted(attributes.items()))
    (d,) = decide_segment(rules=DEFAULTS, alert=segment_alert(attributes, key), now=NOW, policy=POLICY)
    if owner is None:
        assert d.skipped == "no_recipient"
        return
    note = d.notification
    assert note is not None and note.recipient.email == owner and note.template == "segment_alert"
    assert note.transactional and note.customer_id is None
    assert note.context["segment"]["key"] == key and note.context["segment"]["delta"] == -17.0


def test_a_drift_alert_brings_what_was_detected_to_the_rules_and_the_message() -> None:
    details = DriftDetails(
        status="drop_detected",
        day=date(2026, 11, 22),
        since=date(2026, 11, 14),
        drop=17.25,
        drop_ci_low=11.02,
        drop_ci_high=23.1,
        before=81.5,
        after=64.25,
        answers_before=2730,
        answers_after=270,
        evidence=8.31,
        evidence_threshold=8.203,
        watched_drop=10.0,
        min_drop=10.0,
        months_per_false_alarm=120.0,
        message="CSAT dropped by 17.2 points",
    )
    alert = segment_alert({"store": "paris-1"}, "store=paris-1").model_copy(
        update={"reason": "drift_drop", "threshold": None, "drift": details}
    )
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "big-drops",
                    "on": "segment_alert",
                    "when": {"reason": "drift_drop", "drift.drop_ci_low": {"gte": 10}},
                    "actions": [{"type": "segment_alert", "to": "ops@example.com"}],
                }
            ]
        }
    )
    (d,) = decide_segment(rules=rules, alert=alert, now=NOW, policy=POLICY)
    assert d.notification is not None
    assert d.notification.context["segment"]["drift"]["since"] == "2026-11-14"
    assert d.notification.context["segment"]["drift"]["drop_ci_high"] == 23.1
    small = alert.model_copy(update={"drift": details.model_copy(update={"drop_ci_low": 2.0})})
    assert decide_segment(rules=rules, alert=small, now=NOW, policy=POLICY) == []


def test_segment_rules_can_filter_on_the_alert() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "stores-only",
                    "on": "segment_alert",
                    "when": {"segment.store": {"present": True}, "responses": {"gte": 100}},
                    "actions": [{"type": "segment_alert", "to": "ops@example.com"}],
                }
            ]
        }
    )
    assert decide_segment(rules=rules, alert=segment_alert({"store": "x"}, "store=x"), now=NOW, policy=POLICY)
    assert not decide_segment(
        rules=rules, alert=segment_alert({"channel": "x"}, "channel=x"), now=NOW, policy=POLICY
    )
