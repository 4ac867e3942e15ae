"""Rule files: validation errors naming rule and field, matchers, any/all/not, exclusive groups."""

from __future__ import annotations

from typing import Any

import pytest

from services.actions.rules import (
    RuleFileError,
    evaluate,
    holds,
    load_rules_file,
    load_rules_text,
    matches,
    notification_id,
    parse_rules,
)
from services.actions.settings import DEFAULT_RULES, ActionsSettings
from shared.security.ssrf import OutboundPolicy


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
        ({"present": True}, [], False),
        ({"present": True}, ["price"], True),
        ({"present": False}, "", True),
        ({"gt": 5}, None, False),
        ({"gt": 5}, "text", False),
        ({"ne": "x"}, "y", True),
        ({"contains": "price"}, ["delivery_time", "price"], True),
        ({"contains": "price"}, ["delivery_time"], False),
        ({"contains": "price"}, None, False),
        ({"contains_any": ["price", "staff_reception"]}, ["staff_reception"], True),
        ({"contains_any": ["price"]}, [], False),
    ],
)
def test_matchers(matcher: object, value: object, result: bool) -> None:
    assert matches(matcher, value) is result


@pytest.mark.parametrize(
    ("cond", "facts", "result"),
    [
        ({"any": [{"a": 1}, {"b": 2}]}, {"a": 0, "b": 2}, True),
        ({"any": [{"a": 1}, {"b": 2}]}, {"a": 0, "b": 0}, False),
        ({"all": [{"a": 1}, {"b": 2}]}, {"a": 1, "b": 2}, True),
        ({"all": [{"a": 1}, {"b": 2}]}, {"a": 1, "b": 3}, False),
        ({"not": {"a": 1}}, {"a": 2}, True),
        ({"not": {"any": [{"a": 1}, {"b": {"gte": 5}}]}}, {"a": 2, "b": 9}, False),
        ({"not": {"any": [{"a": 1}, {"b": {"gte": 5}}]}}, {"a": 2, "b": None}, True),
        ({"x": "y", "any": [{"a": 1}]}, {"x": "y", "a": 1}, True),
    ],
)
def test_logical_conditions(cond: dict[str, Any], facts: dict[str, Any], result: bool) -> None:
    assert holds(cond, facts) is result


def test_default_rules_load() -> None:
    rules = load_rules_file(DEFAULT_RULES)
    ids = {r.id for r in rules.rules}
    assert ids >= {
        "strategic-account-alert",
        "low-score-csm-alert",
        "low-score-resurvey",
        "promoter-thank-you",
        "review-invitation",
        "segment-owner-alert",
        "critical-comment-theme-alert",
    }
    assert "education" in rules.sequences


A = "actions: [{type: csm_alert}]"


@pytest.mark.parametrize(
    ("text", "rule", "field", "fragment"),
    [
        (f"rules: [{{id: a, {A}}}, {{id: a, {A}}}]", "a", "id", "used twice"),
        ("rules: [{id: bad-one, actions: [{type: fax}]}]", "bad-one", "actions.0.type", "Input should be"),
        (f"rules: [{{id: r1, when: {{score: {{around: 3}}}}, {A}}}]", "r1", "when.score", "unknown operator"),
        ("rules: [{id: r2, actions: []}]", "r2", "actions", "at least 1"),
        (f"rules: [{{id: r3, cooldown: soon, {A}}}]", "r3", "cooldown", "must look like"),
        (f"rules: [{{id: r4, {A}, colour: red}}]", "r4", "colour", "Extra inputs"),
        (f"rules: [{{id: r5, when: {{sentimnt: negative}}, {A}}}]", "r5", "when.sentimnt", "'sentiment'"),
        (f"rules: [{{id: r6, when: {{score: {{lte: two}}}}, {A}}}]", "r6", "when.score.lte", "number"),
        (f"rules: [{{id: r7, when: {{tier: {{in: gold}}}}, {A}}}]", "r7", "when.tier", "unknown fact"),
        (
            f"rules: [{{id: r8, when: {{account.tier: {{in: gold}}}}, {A}}}]",
            "r8",
            "when.account.tier.in",
            "needs a list",
        ),
        (
            f"rules: [{{id: r9, when: {{any: [{{history.negative: 3}}]}}, {A}}}]",
            "r9",
            "when.any[0].history.negative",
            "did you mean 'history.negative_30d'",
        ),
        (
            "rules: [{id: t1, actions: [{type: customer_email}]}]",
            "t1",
            "actions.0.template",
            "needs a template",
        ),
        (
            "rules: [{id: t2, actions: [{type: customer_email, template: hello}]}]",
            "t2",
            "actions.0.template",
            "unknown template 'hello'",
        ),
        (
            "rules: [{id: s1, actions: [{type: customer_email, template: thank_you, sla: 24h}]}]",
            "s1",
            "actions.0.sla",
            "only csm_alert",
        ),
        ("rules: [{id: d1, actions: [{type: csm_alert, delay: 1h}]}]", "d1", "actions.0.delay", "customer"),
        ("rules: [{id: n1, actions: [{type: nurture}]}]", "n1", "actions.0.sequence", "needs the name"),
        (
            "rules: [{id: n2, actions: [{type: nurture, sequence: onboarding}]}]",
            "n2",
            "actions.0.sequence",
            "unknown sequence 'onboarding'",
        ),
        (
            "rules: [{id: f1, actions: [{type: csm_alert, follow_up_after: 2h}]}]",
            "f1",
            "actions.0.follow_up_after",
            "only resurvey",
        ),
        (
            "rules: [{id: c1, actions: [{type: csm_alert, channel: sms}]}]",
            "c1",
            "actions.0.channel",
            "chosen by the type",
        ),
        (
            "rules: [{id: g1, on: segment_alert, actions: [{type: customer_email, template: thank_you}]}]",
            "g1",
            "actions.0.type",
            "cannot run on segment_alert",
        ),
        (
            "rules: [{id: g2, on: segment_alert, when: {sentiment: negative},"
            " actions: [{type: segment_alert}]}]",
            "g2",
            "when.sentiment",
            "unknown fact",
        ),
        (
            "rules: [{id: rv, when: {score: {gte: 4}}, actions: [{type: review_invite}]}]",
            "rv",
            "when.score",
            "review gating",
        ),
        (
            "rules: [{id: rv2, when: {any: [{sentiment: positive}]}, actions: [{type: review_invite}]}]",
            "rv2",
            "when.sentiment",
            "review gating",
        ),
        (
            "rules: [{id: k1, actions: [{type: slack, template: csm_alert}]}]",
            "k1",
            "actions.0.to",
            "needs `to`",
        ),
        (
            "rules: [{id: k2, actions: [{type: csm_alert, to: not-an-address}]}]",
            "k2",
            "actions.0.to",
            "email address",
        ),
        (
            "rules: [{id: k3, actions: [{type: referral_invite, to: a@example.com}]}]",
            "k3",
            "actions.0.to",
            "customer's own address",
        ),
        ("rules: {", None, "file", "not valid YAML"),
        ("- just a list", None, "file", "a mapping"),
    ],
)
def test_rule_errors_name_the_rule_and_field(text: str, rule: str | None, field: str, fragment: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        load_rules_text(text)
    first = caught.value.errors[0]
    assert (first.rule, first.field) == (rule, field), str(caught.value)
    assert fragment in first.message, str(caught.value)
    assert fragment in str(caught.value)


def test_several_errors_are_all_reported() -> None:
    text = (
        "rules: [{id: x1, when: {nope: 1}, actions: [{type: csm_alert}]},"
        " {id: x2, actions: [{type: customer_email}]}]"
    )
    with pytest.raises(RuleFileError) as caught:
        load_rules_text(text)
    assert {(e.rule, e.field) for e in caught.value.errors} == {
        ("x1", "when.nope"),
        ("x2", "actions.0.template"),
    }


def test_yaml_on_is_a_key_not_a_boolean() -> None:
    rules = load_rules_text("rules: [{id: s, on: segment_alert, actions: [{type: segment_alert}]}]")
    assert rules.rules[0].on == "segment_alert"


def test_review_invitation_without_score_conditions_is_accepted() -> None:
    rules = load_rules_text(
        "rules: [{id: reviews, when: {consent.review: true, touchpoint: [checkout]},"
        " actions: [{type: review_invite}]}]"
    )
    assert rules.rules[0].actions[0].template == "review_invite"


def _set(*rules: dict[str, Any]) -> Any:
    return parse_rules({"rules": list(rules)})


def test_first_match_wins_within_a_group_and_other_rules_still_fire() -> None:
    rules = _set(
        {
            "id": "vip",
            "group": "alert",
            "when": {"account.tier": "strategic"},
            "actions": [{"type": "csm_alert"}],
        },
        {"id": "everyone", "group": "alert", "actions": [{"type": "csm_alert"}]},
        {"id": "other", "actions": [{"type": "support_callback"}]},
    )
    assert [r.id for r in evaluate(rules, {"account.tier": "strategic"})] == ["vip", "other"]
    assert [r.id for r in evaluate(rules, {"account.tier": "smb"})] == ["everyone", "other"]


def test_disabled_rules_and_other_triggers_are_not_evaluated() -> None:
    rules = _set(
        {"id": "off", "enabled": False, "actions": [{"type": "csm_alert"}]},
        {"id": "seg", "on": "segment_alert", "actions": [{"type": "segment_alert"}]},
        {"id": "on", "actions": [{"type": "csm_alert"}]},
    )
    assert [r.id for r in evaluate(rules, {})] == ["on"]
    assert [r.id for r in evaluate(rules, {}, on="segment_alert")] == ["seg"]


def test_notification_ids_are_deterministic() -> None:
    assert notification_id("r", "x", 0) == notification_id("r", "x", 0)
    assert notification_id("r", "x", 0) != notification_id("r", "x", 1)


def _hook(url: str, kind: str = "webhook") -> dict[str, Any]:
    alert = {"type": "csm_alert"}
    posted = {"type": kind, "to": url, "template": "csm_alert"}
    return {"rules": [{"id": "ok-rule", "actions": [alert]}, {"id": "hook", "actions": [posted]}]}


PROD = OutboundPolicy.for_environment("prod")
DEV = OutboundPolicy.for_environment("dev")


@pytest.mark.parametrize(
    ("url", "policy", "message"),
    [
        ("http://hooks.example.com/x", PROD, "must start with https://"),
        ("https://127.0.0.1/x", PROD, "loopback"),
        ("http://10.1.2.3/x", DEV, "private"),
        ("https://169.254.169.254/latest/meta-data", PROD, "metadata"),
        ("https://[::ffff:127.0.0.1]/x", PROD, "loopback"),
        ("https://2130706433/x", PROD, "non-canonical"),
        ("https://localhost:8080/x", DEV, "this machine"),
        ("https://user:pw@hooks.example.com/x", PROD, "credentials"),
    ],
)
def test_saved_webhook_and_slack_urls_are_held_to_the_outbound_policy(
    url: str, policy: OutboundPolicy, message: str
) -> None:
    for kind in ("webhook", "slack"):
        with pytest.raises(RuleFileError) as caught:
            parse_rules(_hook(url, kind), outbound=policy)
        (error,) = caught.value.errors
        assert (error.rule, error.field) == ("hook", "actions.0.to") and message in error.message


def test_the_allow_list_opens_internal_receivers_and_the_file_is_not_held_to_it() -> None:
    allowed = OutboundPolicy.for_environment("dev", ["10.1.2.0/24", "localhost"])
    assert (
        parse_rules(_hook("http://10.1.2.3/x"), outbound=allowed).rules[1].actions[0].to
        == "http://10.1.2.3/x"
    )
    assert parse_rules(_hook("http://localhost:9000/x"), outbound=allowed)
    assert parse_rules(_hook("https://hooks.example.com/x"), outbound=PROD)
    assert parse_rules(_hook("http://127.0.0.1/x"))  # no policy given: the form checks only


def test_url_templates_are_checked_at_start_up() -> None:
    with pytest.raises(ValueError, match="customer"):
        ActionsSettings(
            environment="test", survey_url_template="https://s.example.com/{survey_id}?c={customer.email}"
        )
    with pytest.raises(ValueError, match="no value"):
        ActionsSettings(environment="test", alert_url_template="https://a.example.com/{rating_id}")
    assert ActionsSettings(
        environment="test", survey_url_template="https://s/{survey_id}?c={customer_id}"
    ).survey_url_template
