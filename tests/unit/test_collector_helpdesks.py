"""Helpdesk webhooks -> interactions, on example payloads in each provider's documented shape."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.collector.helpdesks import HELPDESKS, HelpdeskPayloadError, Ignored
from services.collector.interactions import InteractionIn, normalize_interaction

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "helpdesks"


def payload(name: str, **changes: Any) -> dict[str, Any]:
    """A fixture with ``changes`` applied at dotted paths (``None`` removes the key)."""
    body: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = body
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    return body


def mapped(provider: str, body: dict[str, Any]) -> InteractionIn:
    result = HELPDESKS[provider](body)
    assert isinstance(result, InteractionIn), result
    return result


EXAMPLES = [
    (
        "zendesk",
        "zendesk_ticket_status_changed",
        {
            "interaction_id": "zendesk:5158:solved",
            "type": "ticket.solved",
            "customer": {"id": "zendesk:8447388090123"},
            "occurred_at": datetime(2026, 11, 23, 10, 12, 7, 672717, tzinfo=UTC),
            "segment": {"channel": "web_form"},
            "attributes": {
                "helpdesk": "zendesk",
                "ticket_id": "5158",
                "brand_id": "8447346621310",
                "group_id": "8447320466430",
                "assignee_id": "8447388090494",
                "priority": "low",
                "ticket_type": "incident",
                "tags": "delivery vip",
            },
        },
    ),
    (
        "zendesk",
        "zendesk_trigger_solved",
        {
            "interaction_id": "zendesk:35436:solved",
            "type": "ticket.solved",
            "customer": {
                "id": "cus_1042",
                "email": "ana@example.com",
                "phone": "+33612345678",
                "locale": "fr",
            },
            "occurred_at": datetime(2026, 11, 23, 9, 35, tzinfo=UTC),
            "segment": {"channel": "web_form", "team": "billing"},
            "attributes": {
                "helpdesk": "zendesk",
                "ticket_id": "35436",
                "brand": "Acme Shop",
                "group": "Billing",
                "assignee_id": "235323",
                "priority": "normal",
                "ticket_type": "question",
                "tags": "refund vip",
            },
        },
    ),
    (
        "freshdesk",
        "freshdesk_ticket_resolved",
        {
            "interaction_id": "freshdesk:11:solved",
            "type": "ticket.solved",
            # sha256 of the lower-cased address, 24 hex digits: stable, and not the address itself
            "customer": {"id": "freshdesk:4ac33642f890c6f67bfe402b", "email": "Lea.Martin@example.com"},
            "occurred_at": None,
            "segment": {"channel": "email", "team": "after_sales"},
            "attributes": {
                "helpdesk": "freshdesk",
                "ticket_id": "11",
                "status": "resolved",
                "priority": "medium",
                "ticket_type": "incident",
                "group": "After-sales",
                "tags": "damaged,parcel",
            },
        },
    ),
    (
        "intercom",
        "intercom_conversation_admin_closed",
        {
            "interaction_id": "intercom:21345011232:closed",
            "type": "chat.closed",
            "customer": {"id": "cus_1042", "email": "ana@example.com"},
            "occurred_at": datetime.fromtimestamp(1763889400, UTC),
            "segment": {"channel": "chat"},
            "attributes": {
                "helpdesk": "intercom",
                "conversation_id": "21345011232",
                "agent_replied": True,
                "assignee_id": "814860",
                "team_id": "5017691",
                "reopens": 0,
                "tags": "billing",
            },
        },
    ),
    (
        "intercom",
        "intercom_conversation_admin_closed_v1",
        {
            "interaction_id": "intercom:21322009097:closed",
            "type": "chat.closed",
            "customer": {"id": "intercom:5c9553cb27e377f24eed49f7", "email": "paul@example.org"},
            "occurred_at": datetime.fromtimestamp(1763883461, UTC),
            "segment": {"channel": "chat"},
            "attributes": {
                "helpdesk": "intercom",
                "conversation_id": "21322009097",
                "assignee_id": "1957471",
            },
        },
    ),
]


@pytest.mark.parametrize(("provider", "fixture", "expected"), EXAMPLES, ids=[e[1] for e in EXAMPLES])
def test_documented_payloads_become_interactions(
    provider: str, fixture: str, expected: dict[str, Any]
) -> None:
    result = mapped(provider, payload(fixture))
    dumped = result.model_dump(exclude_none=True)
    customer = {k: v for k, v in dumped["customer"].items() if v is not None}
    assert customer == expected["customer"]
    assert result.interaction_id == expected["interaction_id"] and result.type == expected["type"]
    assert result.occurred_at == expected["occurred_at"]
    assert result.segment == expected["segment"] and result.attributes == expected["attributes"]


@pytest.mark.parametrize(
    ("provider", "fixture", "changes", "reason"),
    [
        ("zendesk", "zendesk_ticket_status_changed", {"event__current": "PENDING"}, "pending is not solved"),
        ("zendesk", "zendesk_ticket_status_changed", {"event__current": "CLOSED"}, "closed is not solved"),
        ("zendesk", "zendesk_ticket_status_changed", {"type": "zen:event-type:ticket.priority_changed"}, ""),
        ("zendesk", "zendesk_trigger_solved", {"ticket__status": "Open"}, "open is not solved"),
        (
            "freshdesk",
            "freshdesk_ticket_resolved",
            {"freshdesk_webhook__ticket_status": "Pending"},
            "pending",
        ),
        (
            "intercom",
            "intercom_conversation_admin_closed",
            {"topic": "conversation.admin.assigned"},
            "assigned",
        ),
    ],
)
def test_events_no_survey_follows_are_ignored(
    provider: str, fixture: str, changes: dict[str, Any], reason: str
) -> None:
    result = HELPDESKS[provider](payload(fixture, **changes))
    assert isinstance(result, Ignored) and reason in result.reason


@pytest.mark.parametrize(
    ("provider", "fixture", "changes", "field"),
    [
        ("zendesk", "zendesk_ticket_status_changed", {"detail__requester_id": None}, "detail.requester_id"),
        ("zendesk", "zendesk_ticket_status_changed", {"detail": "x"}, "detail"),
        ("zendesk", "zendesk_ticket_status_changed", {"time": "yesterday"}, "time"),
        ("zendesk", "zendesk_trigger_solved", {"ticket__id": ""}, "ticket.id"),
        (
            "zendesk",
            "zendesk_trigger_solved",
            {"requester__external_id": "", "requester__id": ""},
            "requester.id",
        ),
        ("zendesk", "zendesk_trigger_solved", {"ticket": None}, "type"),
        (
            "freshdesk",
            "freshdesk_ticket_resolved",
            {"freshdesk_webhook__requester_email": ""},
            "requester_email",
        ),
        ("freshdesk", "freshdesk_ticket_resolved", {"freshdesk_webhook": None}, "freshdesk_webhook"),
        ("intercom", "intercom_conversation_admin_closed", {"type": "event"}, "type"),
        (
            "intercom",
            "intercom_conversation_admin_closed",
            {"data__item__contacts": None},
            "data.item.contacts",
        ),
        ("intercom", "intercom_conversation_admin_closed", {"data__item__id": None}, "data.item.id"),
    ],
)
def test_malformed_payloads_name_the_field(
    provider: str, fixture: str, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(HelpdeskPayloadError) as caught:
        HELPDESKS[provider](payload(fixture, **changes))
    assert field in caught.value.field


@pytest.mark.parametrize(
    ("changes", "customer"),
    [
        ({"requester__phone": "06 12"}, {"id": "cus_1042", "email": "ana@example.com", "locale": "fr"}),
        ({"requester__email": "not an address", "requester__language": "Klingon"}, {"id": "cus_1042"}),
        ({"requester__external_id": "", "requester__language": "en_US"}, {"id": "zendesk:20978392"}),
    ],
)
def test_a_bad_contact_field_is_dropped_not_the_interaction(
    changes: dict[str, Any], customer: dict[str, Any]
) -> None:
    result = mapped("zendesk", payload("zendesk_trigger_solved", **changes))
    got = result.customer.model_dump(exclude_none=True)
    assert {k: got[k] for k in customer} == customer
    assert set(got) - set(customer) <= {"phone", "email", "locale"}


def test_agent_replied_comes_from_statistics_then_parts_and_is_unknown_without_either() -> None:
    base = "intercom_conversation_admin_closed"
    no_reply = {
        "data__item__statistics__first_admin_reply_at": 0,
        "data__item__statistics__last_admin_reply_at": 0,
    }
    assert mapped("intercom", payload(base)).attributes["agent_replied"] is True
    assert mapped("intercom", payload(base, **no_reply)).attributes["agent_replied"] is False
    comment = {"part_type": "comment", "author": {"type": "admin", "id": "1"}, "body": "<p>Done</p>"}
    parts = {"type": "conversation_part.list", "conversation_parts": [comment]}
    v1 = "intercom_conversation_admin_closed_v1"
    assert (
        mapped("intercom", payload(v1, data__item__conversation_parts=parts)).attributes["agent_replied"]
        is True
    )
    assert "agent_replied" not in mapped("intercom", payload(v1)).attributes  # a bot closed it; no statistics


def test_a_retry_or_a_second_resolution_maps_to_the_same_interaction() -> None:
    resolved = mapped("freshdesk", payload("freshdesk_ticket_resolved"))
    closed = mapped(
        "freshdesk", payload("freshdesk_ticket_resolved", freshdesk_webhook__ticket_status="Closed")
    )
    assert resolved.interaction_id == closed.interaction_id == "freshdesk:11:solved"
    assert resolved.customer.id == closed.customer.id
    upper = payload("freshdesk_ticket_resolved", freshdesk_webhook__requester_email="LEA.MARTIN@EXAMPLE.COM")
    assert mapped("freshdesk", upper).customer.id == resolved.customer.id


@pytest.mark.parametrize("fixture", [e[1] for e in EXAMPLES])
def test_every_mapped_example_normalises_into_an_event(fixture: str) -> None:
    provider = fixture.split("_")[0]
    event = normalize_interaction(
        mapped(provider, payload(fixture)), received_at=datetime(2026, 11, 24, tzinfo=UTC), source=provider
    )
    assert event.interaction_id.startswith(f"{provider}:") and event.occurred_at.tzinfo is not None
