"""The rules' dry run on the in-memory stores: the real engine's decisions, the rules' fates in evaluation
order, the messages (now and scheduled), hidden customer addresses, proposed rule sets, picked ratings,
and no write (the fake's read-only transaction fails its block on any change)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.actions.dryrun import (
    COMMENT_NOT_KEPT,
    HIDDEN,
    DryRunner,
    DryRunRequest,
    DryRunResult,
    RatingSpec,
    to_rating,
    trace,
)
from services.actions.engine import Policy
from services.actions.facts import History, HistoryWindow, build_facts
from services.actions.outcomes import DecisionRow
from services.actions.rulebook import RuleBook
from services.actions.rules import RuleFileError, evaluate, parse_document, parse_rules
from services.actions.settings import DEFAULT_RULES
from services.actions.verbatims import load_taxonomy_file
from shared.scales import ScaleError
from shared.verbatims import DEFAULT_THEMES
from tests.fakes.actions_store import MemoryActions, RatingRow

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
TAXONOMY = load_taxonomy_file(DEFAULT_THEMES)
POLICY = Policy(default_csm_email="csm@example.com", support_email="support@example.com")


def runner() -> DryRunner:
    document = parse_document(Path(DEFAULT_RULES).read_text(encoding="utf-8"))
    book = RuleBook(file_document=document, file_rules=parse_rules(document), file_origin="test")
    return DryRunner(
        rulebook=book, taxonomy=TAXONOMY, policy=POLICY, history=HistoryWindow(), clock=lambda: NOW
    )


def low_strategic(**extra: object) -> dict[str, object]:
    return {
        "metric": "csat",
        "scale": "1-5",
        "score": 1,
        "customer": {"id": "cus-9", "email": "ana@example.com", "locale": "fr"},
        "segment": {"store": "paris-1"},
        "account": {"tier": "strategic", "value": 120000},
        "consent": {"contact": True, "review": True},
        **extra,
    }


async def dry_run(db: MemoryActions, body: dict[str, object], *, reveal: bool = False) -> DryRunResult:
    async with db.read_only() as stores:
        return await runner().run(stores, DryRunRequest.model_validate(body), reveal=reveal)


async def test_a_strategic_low_score_fires_the_playbook_in_order_and_hides_the_customer_address() -> None:
    db = MemoryActions()
    await db.stores().customers.upsert(
        customer_id="cus-9", fields={"owner_email": "owner@example.com", "email": "ana@example.com"}
    )
    result = await dry_run(db, {"rating": low_strategic()})
    assert result.revision == 0 and not result.proposed
    fates = {t.rule_id: t.status for t in result.rules}
    assert fates == {
        "strategic-account-alert": "fired",
        "churn-risk-alert": "group_taken",  # the group's first match won
        "low-score-csm-alert": "group_taken",
        "low-score-customer-email": "fired",
        "low-score-resurvey": "fired",
        "low-value-education": "no_match",
        "critical-comment-theme-alert": "no_match",
        "passive-education": "no_match",
        "promoter-thank-you": "no_match",
        "review-invitation": "fired",
        "segment-owner-alert": "other_trigger",
    }
    messages = [
        (m.rule_id, m.recipient_role, m.recipient, m.channel, m.template, m.locale, m.send_after_s)
        for m in result.messages
    ]
    assert messages == [
        ("strategic-account-alert", "csm", "owner@example.com", "email", "csm_alert", "fr", 0.0),
        ("low-score-customer-email", "customer", HIDDEN, "email", "low_score_followup", "fr", 0.0),
        ("low-score-resurvey", "customer", HIDDEN, "email", "resurvey_open_question", "fr", 7200.0),
        ("review-invitation", "customer", HIDDEN, "email", "review_invite", "fr", 86400.0),
    ]
    alert = result.messages[0]
    assert alert.context["customer"]["email"] == HIDDEN and alert.context["alert"]["priority"] == "high"
    decision = result.decisions[0]
    assert decision.alert is not None
    assert decision.alert.due_after_s == 86400.0 and decision.alert.escalates
    assert [f.kind for f in decision.follow_ups] == ["sla_escalation"]
    assert "ana@example.com" not in result.model_dump_json()
    assert result.facts["account.tier"] == "strategic"


async def test_an_admin_sees_the_address_and_the_stored_fatigue_applies() -> None:
    db = MemoryActions()
    async with db.begin() as stores:  # the customer got the apology yesterday: its 7-day cooldown runs
        await stores.decisions.insert(
            rows=[
                DecisionRow(
                    decision_id="d-1",
                    rule_id="low-score-customer-email",
                    action="customer_email",
                    rating_id="old",
                    customer_id="cus-9",
                    notification_id="n-1",
                    outcome="notified",
                    channel="email",
                    customer_facing=True,
                    ref=None,
                    created_at=NOW - timedelta(days=1),
                )
            ]
        )
    result = await dry_run(db, {"rating": low_strategic()}, reveal=True)
    outcomes = {d.rule_id: d.outcome for d in result.decisions}
    assert outcomes["low-score-customer-email"] == "skipped_cooldown"
    recipients = {m.recipient for m in result.messages if m.recipient_role == "customer"}
    assert recipients == {"ana@example.com"}


async def test_a_proposed_rule_set_is_evaluated_instead_and_a_broken_one_names_rule_and_field() -> None:
    db = MemoryActions()
    proposed = {
        "rules": [
            {"id": "everyone-thanks", "actions": [{"type": "customer_email", "template": "thank_you"}]},
            {"id": "nps-watch", "when": {"metric": "nps"}, "actions": [{"type": "csm_alert"}]},
        ]
    }
    result = await dry_run(db, {"rating": low_strategic(), "rules": proposed})
    assert result.proposed and result.revision is None
    assert [(t.rule_id, t.status) for t in result.rules] == [
        ("everyone-thanks", "fired"),
        ("nps-watch", "no_match"),
    ]
    broken = {"rules": [{"id": "x", "cooldown": "2 weeks", "actions": [{"type": "csm_alert"}]}]}
    with pytest.raises(RuleFileError) as caught:
        await dry_run(db, {"rating": low_strategic(), "rules": broken})
    assert [(e.rule, e.field) for e in caught.value.errors] == [("x", "cooldown")]


async def test_a_picked_rating_uses_what_actions_stored_and_a_wrong_score_names_its_field() -> None:
    db = MemoryActions()
    db.tables.ratings["r-7"] = RatingRow(
        rating_id="r-7",
        customer_id="cus-7",
        occurred_at=NOW - timedelta(hours=3),
        normalized=0.0,
        sentiment="negative",
        has_comment=True,
        survey_id=None,
        themes=["delivery_time"],
        comment_sentiment="negative",
        metric="csat",
        scale="1-5",
        score=1,
    )
    async with db.read_only() as stores:
        recent = await runner().recent(stores, limit=5)
    assert [(p.rating.rating_id, p.rating.score, p.has_comment) for p in recent] == [("r-7", 1, True)]
    result = await dry_run(db, {"rating_id": "r-7"})
    assert result.rating["comment"] == COMMENT_NOT_KEPT
    assert result.facts["themes"] == ["delivery_time"] and result.facts["has_comment"] is True
    fates = {t.rule_id: t.status for t in result.rules}
    assert fates["critical-comment-theme-alert"] == "fired" and fates["low-score-resurvey"] == "no_match"
    with pytest.raises(LookupError):
        await dry_run(db, {"rating_id": "nope"})
    with pytest.raises(ScaleError) as wrong:
        await dry_run(db, {"rating": low_strategic(score=9)})
    assert wrong.value.field == "score"


def test_a_request_names_one_rating_and_a_promoters_nurture_steps_are_listed() -> None:
    with pytest.raises(ValueError, match="either"):
        DryRunRequest.model_validate({"rating_id": "a", "rating": low_strategic()})
    with pytest.raises(ValueError, match="either"):
        DryRunRequest.model_validate({})


async def test_a_middling_score_lists_each_step_of_the_education_sequence() -> None:
    result = await dry_run(MemoryActions(), {"rating": low_strategic(score=4, account={"tier": "smb"})})
    steps = [(m.template, m.step, m.steps, m.send_after_s) for m in result.messages]
    assert steps[:3] == [
        ("nurture_education", 1, 3, 86400.0),
        ("nurture_education", 2, 3, 4 * 86400.0),
        ("nurture_education", 3, 3, 11 * 86400.0),
    ]


@pytest.mark.parametrize("score", [1, 2, 3, 4, 5])
def test_the_trace_fires_exactly_what_the_engine_evaluates(score: int) -> None:
    rules = parse_rules(parse_document(Path(DEFAULT_RULES).read_text(encoding="utf-8")))
    rating = to_rating(RatingSpec.model_validate(low_strategic(score=score)), now=NOW)
    facts = build_facts(rating, None, History(), None)
    fired = [t.rule_id for t in trace(rules, facts) if t.status == "fired"]
    assert fired == [r.id for r in evaluate(rules, facts)]
