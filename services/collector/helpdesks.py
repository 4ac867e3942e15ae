"""Helpdesk webhooks (Zendesk, Freshdesk, Intercom) mapped to interactions: pure, one function per provider.

Each function takes the JSON body the provider posts and returns the ``InteractionIn`` it stands for, or
``Ignored`` when the event is not one a survey follows (a ticket set to pending, a conversation assigned).
Ids are derived from the ticket or conversation, never random: a provider's retry, or the same ticket
solved twice, maps to the same interaction, so it is published once and surveyed at most once.

- Zendesk: the ticket event webhook (``zen:event-type:ticket.status_changed`` to solved; it names the
  requester by id only, so the address must come from the customers API) or a trigger's webhook with the
  JSON body of docs/surveys.md (requester email, phone, language and external id from placeholders).
  Closed always follows solved in Zendesk, so only solved counts.
- Freshdesk: an automation rule's "Trigger webhook" action with the JSON content of docs/surveys.md;
  resolved and closed both count (agents may close directly), under one id per ticket.
- Intercom: the ``conversation.admin.closed`` topic; ``agent_replied`` says whether a teammate answered
  (from the conversation's statistics or its parts), so a survey can skip conversations only a bot saw.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from services.collector.interactions import InteractionIn
from services.collector.sms import normalize_phone
from shared.events import AttributeValue

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2})?(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")
_LANGUAGES = {"english": "en", "anglais": "en", "french": "fr", "français": "fr", "francais": "fr"}


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed event that no survey follows; the webhook answers 200 and publishes nothing."""

    reason: str


class HelpdeskPayloadError(ValueError):
    """The body is not the provider's documented shape; ``field`` is the JSON path at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


Mapped = InteractionIn | Ignored


# ---- small readers -------------------------------------------------------------------------------
def _text(value: Any) -> str | None:
    """A placeholder's value: numbers become text, empty strings (unset placeholders) become None."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _required(container: Mapping[str, Any], key: str, path: str) -> str:
    value = _text(container.get(key))
    if value is None:
        raise HelpdeskPayloadError(path, "missing")
    return value


def _mapping(container: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = container.get(key)
    if not isinstance(value, Mapping):
        raise HelpdeskPayloadError(path, "an object is expected")
    return value


def _optional(container: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = container.get(key)
    return value if isinstance(value, Mapping) else {}


def _time(value: Any, path: str) -> datetime | None:
    """ISO 8601 with any fraction (Zendesk sends nanoseconds, or minutes only) or Unix seconds; UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    match = _TIME.match(str(value).strip())
    if not match:
        raise HelpdeskPayloadError(path, f"not a date-time: {value!r}")
    day, minutes, seconds, fraction, zone = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    offset = "+00:00" if zone in (None, "Z") else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    return datetime.fromisoformat(f"{day}T{minutes}{seconds or ':00'}.{micro}{offset}").astimezone(UTC)


def _email(value: Any) -> str | None:
    text = _text(value)
    return text if text and _EMAIL.match(text) else None


def _phone(value: Any) -> str | None:
    """An E.164 number, or None: a badly typed number must not lose the customer's interaction."""
    text = _text(value)
    if text is None:
        return None
    try:
        return normalize_phone(text)
    except ValueError:
        return None


def _locale(value: Any) -> str | None:
    """``fr``, ``fr-FR``, ``en_US`` or a language name as helpdesks display it (English, Français)."""
    text = _text(value)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in _LANGUAGES:
        return _LANGUAGES[lowered]
    match = re.match(r"^([a-z]{2})(?:[-_]([a-z]{2}))?$", lowered)
    if not match:
        return None
    return match.group(1) + (f"-{match.group(2).upper()}" if match.group(2) else "")


def _slug(value: Any) -> str | None:
    """``Web Form`` -> ``web_form``: a segment value or attribute that groups the same way everywhere."""
    text = _text(value)
    if text is None:
        return None
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:100] or None


def _email_id(provider: str, email: str) -> str:
    """A stable customer id from an address, without the address itself becoming an id."""
    return f"{provider}:{hashlib.sha256(email.lower().encode()).hexdigest()[:24]}"


def _build(body: dict[str, Any], attributes: Mapping[str, AttributeValue]) -> InteractionIn:
    """The interaction, with unset attributes dropped; a value our model refuses names its field."""
    body["attributes"] = {k: v for k, v in attributes.items() if v is not None}
    body["customer"] = {k: v for k, v in body["customer"].items() if v is not None}
    body["segment"] = {k: v for k, v in body.get("segment", {}).items() if v}
    try:
        return InteractionIn.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise HelpdeskPayloadError(".".join(str(p) for p in first["loc"]), str(first["msg"])) from exc


# ---- Zendesk -------------------------------------------------------------------------------------
def from_zendesk(payload: Mapping[str, Any]) -> Mapped:
    """A Zendesk ticket event webhook or the documented trigger body; only solved tickets are surveyed."""
    kind = _text(payload.get("type")) or ""
    if kind.startswith("zen:event-type:"):
        return _zendesk_event(payload, kind)
    if isinstance(payload.get("ticket"), Mapping):
        return _zendesk_trigger(payload)
    raise HelpdeskPayloadError("type", "neither a Zendesk event (zen:event-type:...) nor a trigger body")


def _zendesk_event(payload: Mapping[str, Any], kind: str) -> Mapped:
    if kind != "zen:event-type:ticket.status_changed":
        return Ignored(f"{kind} is not a status change")
    event = _mapping(payload, "event", "event")
    status = (_text(event.get("current")) or "").lower()
    if status != "solved":
        return Ignored(f"ticket status {status or 'unknown'} is not solved")
    detail = _mapping(payload, "detail", "detail")
    ticket_id = _required(detail, "id", "detail.id")
    requester = _required(detail, "requester_id", "detail.requester_id")
    via = detail.get("via")
    channel = _slug(via.get("channel")) if isinstance(via, Mapping) else None
    tags = detail.get("tags")
    return _build(
        {
            "interaction_id": f"zendesk:{ticket_id}:solved",
            "type": "ticket.solved",
            "customer": {"id": f"zendesk:{requester}"},
            "occurred_at": _iso(_time(payload.get("time"), "time")),
            "segment": {"channel": channel},
        },
        {
            "helpdesk": "zendesk",
            "ticket_id": ticket_id,
            "brand_id": _text(detail.get("brand_id")),
            "group_id": _text(detail.get("group_id")),
            "assignee_id": _text(detail.get("assignee_id")),
            "priority": _slug(detail.get("priority")),
            "ticket_type": _slug(detail.get("type")),
            "tags": " ".join(str(t) for t in tags) if isinstance(tags, list) and tags else None,
        },
    )


def _zendesk_trigger(payload: Mapping[str, Any]) -> Mapped:
    ticket = _mapping(payload, "ticket", "ticket")
    status = (_text(ticket.get("status")) or "").lower()
    if status != "solved":
        return Ignored(f"ticket status {status or 'unknown'} is not solved")
    ticket_id = _required(ticket, "id", "ticket.id")
    requester = _mapping(payload, "requester", "requester")
    customer_id = (
        _text(requester.get("external_id")) or f"zendesk:{_required(requester, 'id', 'requester.id')}"
    )
    return _build(
        {
            "interaction_id": f"zendesk:{ticket_id}:solved",
            "type": "ticket.solved",
            "customer": {
                "id": customer_id,
                "email": _email(requester.get("email")),
                "phone": _phone(requester.get("phone")),
                "locale": _locale(requester.get("language")),
            },
            "occurred_at": _iso(_time(ticket.get("updated_at"), "ticket.updated_at")),
            "segment": {"channel": _slug(ticket.get("via")), "team": _slug(ticket.get("group"))},
        },
        {
            "helpdesk": "zendesk",
            "ticket_id": ticket_id,
            "brand": _text(ticket.get("brand")),
            "group": _text(ticket.get("group")),
            "assignee_id": _text(ticket.get("assignee_id")),
            "priority": _slug(ticket.get("priority")),
            "ticket_type": _slug(ticket.get("type")),
            "tags": _text(ticket.get("tags")),
        },
    )


# ---- Freshdesk -----------------------------------------------------------------------------------
_FRESHDESK_SOLVED = {"resolved", "closed"}


def from_freshdesk(payload: Mapping[str, Any]) -> Mapped:
    """The documented "Trigger webhook" content (``freshdesk_webhook``); resolved and closed count once."""
    hook = _mapping(payload, "freshdesk_webhook", "freshdesk_webhook")
    status = (_text(hook.get("ticket_status")) or "").lower()
    if status not in _FRESHDESK_SOLVED:
        return Ignored(f"ticket status {status or 'unknown'} is neither resolved nor closed")
    ticket_id = _required(hook, "ticket_id", "freshdesk_webhook.ticket_id")
    email = _email(hook.get("requester_email") or hook.get("ticket_contact_email"))
    external = _text(hook.get("requester_external_id") or hook.get("ticket_contact_unique_external_id"))
    if external is None and email is None:
        raise HelpdeskPayloadError(
            "freshdesk_webhook.requester_email", "the requester's email or external id is needed"
        )
    return _build(
        {
            "interaction_id": f"freshdesk:{ticket_id}:solved",
            "type": "ticket.solved",
            "customer": {
                "id": external or _email_id("freshdesk", email or ""),
                "email": email,
                "phone": _phone(hook.get("requester_phone")),
                "locale": _locale(hook.get("requester_language")),
            },
            "segment": {
                "channel": _slug(hook.get("ticket_source")),
                "team": _slug(hook.get("ticket_group_name")),
            },
        },
        {
            "helpdesk": "freshdesk",
            "ticket_id": ticket_id,
            "status": status,
            "priority": _slug(hook.get("ticket_priority")),
            "ticket_type": _slug(hook.get("ticket_type")),
            "group": _text(hook.get("ticket_group_name")),
            "tags": _text(hook.get("ticket_tags")),
        },
    )


# ---- Intercom ------------------------------------------------------------------------------------
def from_intercom(payload: Mapping[str, Any]) -> Mapped:
    """An Intercom ``notification_event``; only ``conversation.admin.closed`` becomes ``chat.closed``."""
    if _text(payload.get("type")) != "notification_event":
        raise HelpdeskPayloadError("type", "an Intercom notification_event is expected")
    topic = _text(payload.get("topic")) or ""
    if topic != "conversation.admin.closed":
        return Ignored(f"topic {topic or 'unknown'} is not conversation.admin.closed")
    item = _mapping(_mapping(payload, "data", "data"), "item", "data.item")
    conversation_id = _required(item, "id", "data.item.id")
    person = _intercom_person(item)
    stats = _optional(item, "statistics")
    closed = _time(stats.get("last_close_at"), "data.item.statistics.last_close_at")
    assignee = _optional(item, "assignee")
    return _build(
        {
            "interaction_id": f"intercom:{conversation_id}:closed",
            "type": "chat.closed",
            "customer": person,
            "occurred_at": _iso(closed or _time(payload.get("created_at"), "created_at")),
            "segment": {"channel": "chat"},
        },
        {
            "helpdesk": "intercom",
            "conversation_id": conversation_id,
            "agent_replied": _agent_replied(item, stats),
            "assignee_id": _text(item.get("admin_assignee_id")) or _text(assignee.get("id")),
            "team_id": _text(item.get("team_assignee_id")),
            "reopens": stats.get("count_reopens") if isinstance(stats.get("count_reopens"), int) else None,
            "tags": _tag_names(item.get("tags")),
        },
    )


def _tag_names(tags: Any) -> str | None:
    """Intercom's ``{"type": "tag.list", "tags": [{"name": ...}]}`` as space-separated names."""
    listed = tags.get("tags") if isinstance(tags, Mapping) else None
    names = [str(t["name"]) for t in listed or [] if isinstance(t, Mapping) and t.get("name")]
    return " ".join(names) or None


def _intercom_person(item: Mapping[str, Any]) -> dict[str, Any]:
    """The customer: ``contacts`` (API 2.x) or ``user`` (1.x); their external id when the app set one."""
    contacts = item.get("contacts")
    listed = contacts.get("contacts") if isinstance(contacts, Mapping) else None
    if isinstance(listed, list) and listed and isinstance(listed[0], Mapping):
        contact: Mapping[str, Any] = listed[0]
        external = _text(contact.get("external_id"))
    elif isinstance(item.get("user"), Mapping):
        contact = item["user"]
        external = _text(contact.get("user_id"))
    else:
        raise HelpdeskPayloadError("data.item.contacts", "the conversation names no contact")
    source = item.get("source")
    author = source.get("author") if isinstance(source, Mapping) else None
    author_email = (
        author.get("email") if isinstance(author, Mapping) and author.get("type") != "admin" else None
    )
    return {
        "id": external or f"intercom:{_required(contact, 'id', 'data.item.contacts.contacts.0.id')}",
        "email": _email(contact.get("email") or author_email),
    }


def _agent_replied(item: Mapping[str, Any], stats: Mapping[str, Any]) -> bool | None:
    """A teammate answered: the statistics say so, or a part is an admin's comment; None when unknown."""
    if stats.get("first_admin_reply_at") or stats.get("last_admin_reply_at"):
        return True
    parts_list = item.get("conversation_parts")
    parts = parts_list.get("conversation_parts") if isinstance(parts_list, Mapping) else None
    for part in parts if isinstance(parts, list) else []:
        author = part.get("author") if isinstance(part, Mapping) else None
        if (
            part.get("part_type") == "comment"
            and isinstance(author, Mapping)
            and author.get("type") == "admin"
        ):
            return True
    return False if stats else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


#: Provider name (the webhook path's last part) -> its mapping.
HELPDESKS: dict[str, Callable[[Mapping[str, Any]], Mapped]] = {
    "zendesk": from_zendesk,
    "freshdesk": from_freshdesk,
    "intercom": from_intercom,
}
