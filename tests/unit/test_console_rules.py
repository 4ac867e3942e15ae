"""The Rules view's pure parts: rules in plain words (a table in both languages), the playbook cards,
the diff between revisions, and the forms (YAML, the APIs' errors at their fields, hidden addresses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from services.actions.rules import DEFAULT_TEMPLATE, GATING_FACTS, RATING_FACTS, SEGMENT_FACTS, ActionType
from services.actions.settings import DEFAULT_RULES
from services.actions.yamlio import load_yaml as actions_yaml
from services.console.i18n import CATALOGS, Translator
from services.console.playbook import DEFAULT_TEMPLATES, RECIPIENTS, action_title, outcome_text, sections
from services.console.rulediff import diff, field_changes
from services.console.ruleforms import (
    HIDDEN,
    DryRunForm,
    FieldError,
    RuleForm,
    draft_rule,
    dry_run_body,
    dry_run_errors,
    hide_addresses,
    load_yaml,
    rule_errors,
)
from services.console.rulewords import (
    BOOL_FACTS,
    NAMED_FACTS,
    VALUE_KINDS,
    duration,
    parse_duration,
    sentence,
)
from shared.vocabulary import LOCALES

UTC = ZoneInfo("UTC")
EN, FR = Translator("en", time_zone=UTC), Translator("fr", time_zone=UTC)
PLAYBOOK: dict[str, Any] = actions_yaml(Path(DEFAULT_RULES).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("when", "on", "english", "french"),
    [
        (
            {"metric": "csat", "score": {"lte": 2}, "account.tier": "strategic"},
            "rating",
            "When a CSAT rating is 2 or less and the account tier is strategic",
            "Quand une note CSAT vaut 2 ou moins et le niveau du compte est strategic",
        ),
        (None, "rating", "For every rating", "Pour chaque note"),
        (
            {"sentiment": "negative", "has_comment": False},
            "rating",
            "When the rating is negative and the customer left no comment",
            "Quand la note est négative et le client n'a laissé aucun commentaire",
        ),
        (
            {
                "sentiment": "negative",
                "any": [{"account.tier": ["strategic", "enterprise"]}, {"account.value": {"gte": 50000}}],
            },
            "rating",
            "When the rating is negative and (the account tier is strategic or enterprise, "
            "or the account value is 50,000 or more)",
            "Quand la note est négative et (le niveau du compte est strategic ou enterprise, "
            "ou la valeur du compte vaut 50\u202f000 ou plus)",
        ),
        (
            {"consent.contact": True, "not": {"account.tier": {"in": ["strategic"]}}},
            "rating",
            "When the customer agreed to be contacted, unless the account tier is strategic",
            "Quand le client accepte d'être contacté, sauf si le niveau du compte est strategic",
        ),
        (
            {"normalized": {"gte": 0.5, "lt": 0.9}, "sentiment": {"ne": "negative"}},
            "rating",
            "When the normalised score is 50% or more and less than 90% and the rating is not negative",
            "Quand la note normalisée vaut 50\u00a0% ou plus et moins de 90\u00a0% "
            "et la note n'est pas négative",
        ),
        (
            {
                "any": [
                    {"history.negative_30d": {"gte": 3}},
                    {"all": [{"history.declining": True}, {"nps_class": "detractor"}]},
                ]
            },
            "rating",
            "When the number of low scores in 30 days is 3 or more, or (the customer's ratings are declining "
            "and the NPS group is detractor)",
            "Quand le nombre de notes basses sur 30 jours vaut 3 ou plus, ou (les notes du client sont en "
            "baisse et le groupe NPS est détracteur)",
        ),
        (
            {"comment.sentiment": "negative", "themes": {"contains_any": ["delivery_time", "price"]}},
            "rating",
            "When the comment's tone is negative and the comment's themes include delivery time or price",
            "Quand le ton du commentaire est négatif et les thèmes du commentaire comprennent "
            "delivery time ou price",
        ),
        (
            {"segment.store": {"present": True}, "customer.plan": "pro", "history.trend": {"lt": -0.15}},
            "rating",
            "When the store segment is known, the customer's plan is pro and the trend (change per rating) "
            "is less than -0.15",
            "Quand on connaît le segment store, l'attribut client plan est pro et la tendance (variation par "
            "note) vaut moins de -0,15",
        ),
        (
            {"score": {"lt": 60}, "responses": {"gte": 1000}},
            "segment_alert",
            "When a segment's score drops and the segment's score is less than 60 and the number of answers "
            "is 1,000 or more",
            "Quand le score d'un segment chute et le score du segment vaut moins de 60 et le nombre "
            "de réponses vaut 1\u202f000 ou plus",
        ),
        (
            None,
            "segment_alert",
            "Whenever a segment's score drops",
            "Chaque fois que le score d'un segment chute",
        ),
    ],
)
def test_conditions_read_as_one_sentence_in_both_languages(
    when: dict[str, Any] | None, on: str, english: str, french: str
) -> None:
    assert sentence(when, EN, on=on) == english
    assert sentence(when, FR, on=on) == french


@pytest.mark.parametrize(
    ("text", "english", "french"),
    [
        ("24h", "24 hours", "24\u00a0heures"),
        ("48h", "2 days", "2\u00a0jours"),
        ("14d", "2 weeks", "2\u00a0semaines"),
        ("90s", "90 seconds", "90\u00a0secondes"),
        ("30m", "30 minutes", "30 minutes"),
        (7200, "2 hours", "2\u00a0heures"),
    ],
)
def test_durations_are_exact_in_the_readers_language(text: str | int, english: str, french: str) -> None:
    span = parse_duration(text)
    assert span is not None
    assert (duration(span, EN), duration(span, FR)) == (english, french)
    assert parse_duration("soon") is None and parse_duration(True) is None


def test_every_fact_operator_action_and_outcome_has_words_in_both_languages() -> None:
    facts = (RATING_FACTS | SEGMENT_FACTS) - BOOL_FACTS
    assert facts <= NAMED_FACTS | {"customer.opted_out"}  # opted_out reads as a yes/no phrase
    keys = {f"rules.fact.{f.replace('.', '_')}" for f in NAMED_FACTS}
    keys |= {f"rules.bool.{f.replace('.', '_')}.{b}" for f in BOOL_FACTS for b in ("true", "false")}
    keys |= {f"rules.action.{a.value}" for a in ActionType} | {f"rules.role.{r}" for r in RECIPIENTS.values()}
    keys |= {f"rules.channel.{c}" for c in ("email", "sms", "slack", "webhook")} | {"rules.role.customer"}
    keys |= {
        f"rules.dry.status.{s}" for s in ("fired", "no_match", "group_taken", "disabled", "other_trigger")
    }
    whys = ("opted_out", "no_consent", "cooldown", "daily_cap", "no_recipient", "already_enrolled")
    keys |= {f"rules.dry.why.{w}" for w in whys} | {f"rules.priority.{p}" for p in ("low", "normal", "high")}
    keys |= {
        f"rules.value.{k}.{v}"
        for k in set(VALUE_KINDS.values()) - {"nps_class"}
        for v in ("negative", "neutral", "positive")
    }
    keys |= {"rules.dry.follow_up.sla_escalation", "rules.dry.follow_up.resurvey_no_answer"}
    for locale in LOCALES:
        assert keys - set(CATALOGS[locale]) == set()
    assert GATING_FACTS <= RATING_FACTS  # the table above covers what a rule may test
    assert (
        outcome_text("skipped_cooldown", FR)
        == "ne fait rien : le délai de carence de la règle court pour ce client"
    )
    assert outcome_text("skipped_new_reason", EN) == "does nothing: new_reason"
    assert action_title("carrier_pigeon", EN) == "carrier_pigeon"


def test_the_default_templates_are_the_actions_services() -> None:
    assert {k.value: v for k, v in DEFAULT_TEMPLATE.items()} == DEFAULT_TEMPLATES


def test_the_playbook_reads_in_evaluation_order_with_its_exclusive_group_together() -> None:
    rating, segment = sections(PLAYBOOK, EN)
    assert rating.on == "rating" and segment.on == "segment_alert"
    first = rating.blocks[0]
    assert first.group == "csm-alert"
    assert [c.rule_id for c in first.rules] == [
        "strategic-account-alert",
        "churn-risk-alert",
        "low-score-csm-alert",
    ]
    assert [c.position for b in rating.blocks for c in b.rules] == list(range(1, 11))
    strategic = first.rules[0]
    assert strategic.sentence.startswith("When the rating is negative and (the account tier is strategic")
    (alert,) = strategic.actions
    details = {d.label: d.value for d in alert.details}
    assert alert.title == "Alert the account's CSM"
    assert details == {
        "Template": "csm_alert",
        "Channel": "email",
        "To": "the account's CSM",
        "Priority": "high",
        "SLA": "respond within 24 hours; escalates to the CSM's manager when it runs out",
    }
    resurvey = next(c for b in rating.blocks for c in b.rules if c.rule_id == "low-score-resurvey")
    assert resurvey.cooldown == "2 weeks"
    assert {d.label: d.value for d in resurvey.actions[0].details}["Follow-up"] == (
        "support is asked to call if there is no answer within 2 days"
    )
    nurture = next(c for b in rating.blocks for c in b.rules if c.rule_id == "low-value-education")
    assert nurture.actions[0].title == "Enrol the customer in the education sequence"
    (fr_segment,) = sections(PLAYBOOK, FR)[1].blocks
    assert fr_segment.rules[0].sentence == "Chaque fois que le score d'un segment chute"


# ---- the diff ---------------------------------------------------------------------------------------
def _rules(*items: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "rules": list(items)}


A = {"id": "a", "when": {"sentiment": "negative"}, "actions": [{"type": "csm_alert", "sla": "24h"}]}
B = {"id": "b", "actions": [{"type": "customer_email", "template": "thank_you"}], "cooldown": "7d"}
C = {"id": "c", "actions": [{"type": "theme_alert"}]}
E = {"id": "e", "actions": [{"type": "support_callback"}]}


def test_the_diff_names_added_removed_changed_and_moved_rules_field_by_field() -> None:
    changed_a = {**A, "when": {"sentiment": "negative", "account.tier": ["strategic", "enterprise"]}}
    changed_a["actions"] = [{"type": "csm_alert", "sla": "48h", "priority": "high"}]
    new = {"id": "d", "actions": [{"type": "csm_alert"}]}
    result = diff(_rules(A, E, B, C), _rules(C, changed_a, E, new))
    summary = [(c.rule_id, c.kind, c.position_before, c.position_after) for c in result.rules]
    assert summary == [
        ("c", "moved", 4, 1),  # c jumped ahead: a and e kept their order, so only c moved
        ("a", "changed", 1, 2),
        ("b", "removed", 3, None),  # where it was: after e
        ("d", "added", None, 4),
    ]
    fields = {(f.path, f.before, f.after) for f in result.rules[1].fields}
    assert fields == {
        ("when.account.tier", None, "[strategic, enterprise]"),
        ("actions[0].sla", "24h", "48h"),
        ("actions[0].priority", None, "high"),
    }
    removed = {(f.path, f.before, f.after) for f in result.rules[2].fields}
    assert ("cooldown", "7d", None) in removed and ("actions[0].template", "thank_you", None) in removed
    assert (
        result.count("added"),
        result.count("removed"),
        result.count("changed"),
        result.count("moved"),
    ) == (1, 1, 1, 1)


def test_the_same_rules_make_no_diff_and_sequences_are_compared_too() -> None:
    same = diff(_rules(A, B), _rules(A, B))
    assert same.empty and same.rules == ()
    old = {**_rules(A), "sequences": {"edu": {"steps": [{"after": "1d"}]}}}
    new = {**_rules(A), "sequences": {"edu": {"steps": [{"after": "2d"}, {"after": "5d"}]}}}
    assert [(f.path, f.before, f.after) for f in diff(old, new).sequences] == [
        ("edu.steps[0].after", "1d", "2d"),
        ("edu.steps[1].after", None, "5d"),
    ]
    assert field_changes({"enabled": True}, {"enabled": False})[0].after == "false"


# ---- the forms --------------------------------------------------------------------------------------
def test_a_rule_goes_to_the_form_and_back_unchanged() -> None:
    for rule in PLAYBOOK["rules"]:
        form = RuleForm.of(rule, revision=3)
        draft = draft_rule(form, original=rule)
        assert draft.errors == () and draft.rule == rule, rule["id"]


def test_the_form_refuses_bad_yaml_at_its_field_and_reads_yaml_12_booleans() -> None:
    broken = RuleForm(rule_id="x", when="sentiment: [negative", actions="type: csm_alert")
    draft = draft_rule(broken, original=None)
    assert [(e.field, e.message) for e in draft.errors] == [
        ("when", "rules.form.bad_yaml"),
        ("actions", "rules.form.not_a_list"),
    ]
    assert load_yaml("on: segment_alert\nyes: no") == {"on": "segment_alert", "yes": "no"}
    with pytest.raises(yaml.YAMLError, match="aliases"):
        load_yaml("a: &x [1, 2]\nb: *x")
    fresh = draft_rule(RuleForm(rule_id="n", cooldown="0", actions="- type: csm_alert"), original=None)
    assert fresh.rule == {"id": "n", "actions": [{"type": "csm_alert"}]}  # defaults stay implicit
    kept = draft_rule(
        RuleForm(rule_id="k", cooldown="", actions="[]"), original={"id": "k", "cooldown": "7d"}
    )
    assert kept.rule == {"id": "k", "actions": [], "cooldown": 0}  # a cleared cooldown says so


def test_the_rules_apis_errors_land_on_their_fields() -> None:
    problem = {
        "type": "https://csat.dev/problems/invalid-rules",
        "errors": [
            {
                "field": "cooldown",
                "rule": "vip",
                "message": "duration '2 weeks' must look like 90s, 30m, 24h, 7d or 2w",
            },
            {"field": "actions.0.sla", "rule": "vip", "message": "only csm_alert actions have an SLA"},
            {"field": "when.sentimnt", "rule": "vip", "message": "unknown fact 'sentimnt'"},
            {"field": "id", "rule": "other", "message": "used twice"},
        ],
    }
    found = [(e.field, e.message) for e in rule_errors(problem, rule_id="vip")]
    assert found == [
        ("cooldown", "duration '2 weeks' must look like 90s, 30m, 24h, 7d or 2w"),
        ("actions", "actions.0.sla: only csm_alert actions have an SLA"),
        ("when", "when.sentimnt: unknown fact 'sentimnt'"),
        ("form", "rule other: id: used twice"),
    ]


def test_the_dry_run_form_builds_the_rating_and_maps_errors_back() -> None:
    form = DryRunForm(
        metric="csat",
        scale="1-5",
        score="2",
        customer="cus-1",
        segment="store: paris-1\nchannel:chat",
        tier="strategic",
        value="120 000,5",
        email="ana@example.com",
        contact=True,
        proposed="rules: []",
    )
    built = dry_run_body(form)
    assert built.errors == () and not built.pasted
    assert built.body["rating"] == {
        "metric": "csat",
        "scale": "1-5",
        "score": 2,
        "customer": {"id": "cus-1", "locale": "en", "email": "ana@example.com"},
        "segment": {"store": "paris-1", "channel": "chat"},
        "consent": {"contact": True, "review": False},
        "account": {"tier": "strategic", "value": 120000.5},
    }
    assert built.body["rules"] == {"rules": []}
    bad = dry_run_body(DryRunForm(segment="store", value="lots", pasted="", proposed="- a"))
    assert [e.field for e in bad.errors] == ["segment", "value", "proposed"]
    pasted = dry_run_body(DryRunForm(pasted='{"metric": "nps", "score": 3}'))
    assert pasted.pasted and pasted.body["rating"] == {"metric": "nps", "score": 3}
    problem = {"errors": [{"field": "rating.score", "message": "score 9 is outside scale 1-5 (1 to 5)"}]}
    assert dry_run_errors(problem, pasted=False) == [
        FieldError("score", "score 9 is outside scale 1-5 (1 to 5)")
    ]
    assert dry_run_errors(problem, pasted=True)[0].field == "pasted"
    rules_problem = {
        "type": "x/invalid-rules",
        "errors": [{"field": "cooldown", "rule": "r", "message": "bad"}],
    }
    assert dry_run_errors(rules_problem, pasted=False) == [FieldError("proposed", "rule r: cooldown: bad")]


def test_a_picked_rating_fills_the_form_with_what_actions_kept() -> None:
    picked = {
        "rating_id": "r-7",
        "metric": "csat",
        "scale": "1-5",
        "score": 1,
        "customer": {"id": "cus-7"},
        "occurred_at": "2026-12-07T06:00:00Z",
        "comment": "…",
        "themes": ["price"],
        "comment_sentiment": "negative",
    }
    form = DryRunForm.of(picked)
    rating = dry_run_body(form).body["rating"]
    assert (
        rating["rating_id"] == "r-7"
        and rating["themes"] == ["price"]
        and rating["comment_sentiment"] == "negative"
    )
    assert rating["occurred_at"] == "2026-12-07T06:00:00Z" and rating["comment"] == "…"


def test_addresses_are_hidden_everywhere_in_an_answer() -> None:
    answer = {
        "rating": {"customer": {"id": "c", "email": "ana@example.com", "phone": "+33612345678"}},
        "messages": [
            {
                "recipient_role": "customer",
                "recipient": "ana@example.com",
                "context": {"customer": {"email": "ana@example.com"}},
            },
            {
                "recipient_role": "csm",
                "recipient": "owner@example.com",
                "context": {"customer": {"phone": "+33612345678", "email": None}},
            },
        ],
    }
    hidden = hide_addresses(answer)
    assert "ana@example.com" not in repr(hidden) and "+33612345678" not in repr(hidden)
    assert hidden["messages"][1]["recipient"] == "owner@example.com"  # staff addresses stay
    assert (
        hidden["messages"][0]["recipient"] == HIDDEN
        and hidden["messages"][1]["context"]["customer"]["email"] is None
    )
