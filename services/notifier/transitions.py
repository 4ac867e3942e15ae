"""What happens to a delivery, decided without I/O: facts in, a named transition out.

Life of a delivery (``notifier.deliveries``, one row per notification id):

    pending --claim--> sending --provider answer--> sent | failed | suppressed | unknown
       ^                  |
       +---- retry -------+   (429, 5xx, no connection: ``next_attempt_at`` = backoff or Retry-After)
    pending (quiet hours: ``next_attempt_at`` = the end of the recipient's quiet hours)

The dispatcher loads the facts (the row and its request, the matching suppression-list entry, the
provider's answer), calls ``admit`` / ``compose`` / ``record`` / ``recover``, and applies what they
return through its store: ``Send`` (claim and call the provider), ``Defer``, ``Reschedule`` or ``Final``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from services.notifier import mailsafe
from services.notifier.policy import (
    AddressKeys,
    QuietHours,
    backoff_delay,
    local_day,
    normalise_address,
    zone_for,
)
from services.notifier.ports import DailyCaps, DailySlot, DeliveryRow, SuppressionEntry
from services.notifier.providers import Message, SendResult, Verdict
from services.notifier.survey_messages import SurveyInvitation, render_survey_email, render_survey_sms
from services.notifier.templating import TemplateBroken, TemplateMissing, Templates
from services.notifier.tokens import UnsubscribeClaim, UnsubscribeTokens
from shared.events import Channel, NotificationRequested, OutcomeStatus
from shared.identity.config import DEV_ADDRESS_HASH_KEY
from shared.security.hashing import AddressHasher
from shared.security.urls import quote_id
from shared.vocabulary import SURVEY_TEMPLATE

#: Channels whose recipients can opt out by address (the suppression list's scopes).
ADDRESS_SCOPE = {Channel.EMAIL: "email", Channel.SMS: "sms"}


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    max_attempts: int = 5
    retry_base_s: float = 2.0
    retry_cap_s: float = 600.0
    interval_s: float = 0.2
    concurrency: int = 16
    #: Rows claimed per transaction for in-transaction providers (the outbox), which have no sends in flight.
    batch: int = 200
    #: At most this many provider answers recorded per transaction.
    record_batch: int = 100
    attempt_timeout_s: float = 31.0
    lease_grace_s: float = 30.0
    #: Customer-facing messages per day: per customer, per recipient address, per source (0 = no cap).
    daily_cap: int = 3
    address_cap: int = 3
    source_cap: int = 10_000
    #: Keyed hashes of addresses; the public dev key unless the service configures its own.
    address_keys: AddressKeys = field(
        default_factory=lambda: AddressKeys(AddressHasher([DEV_ADDRESS_HASH_KEY]))
    )
    quiet: QuietHours | None = None
    default_zone: tzinfo = UTC
    public_base_url: str = "http://127.0.0.1:8003"
    unsubscribe_mailto: str | None = None
    #: Survey emails may link to http:// addresses (dev and test stacks only; prod needs https).
    allow_http_links: bool = False

    @property
    def caps(self) -> DailyCaps:
        return DailyCaps(customer=self.daily_cap, address=self.address_cap, source=self.source_cap)


# ---- facts --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Address:
    """Where a message goes, and the suppression-list scope and keyed hash of it (email and SMS only).

    ``candidates``: every key a stored entry for this address may carry (older hash keys, legacy hash).
    """

    to: str
    scope: str | None
    key: str | None
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Due:
    """A due delivery with what its preparation depends on."""

    row: DeliveryRow
    note: NotificationRequested
    #: The name of the provider serving the request's channel.
    provider: str
    address: Address | None
    #: The first matching suppression-list entry (``scope:reason``); only looked up for customer messages.
    suppressed: str | None
    now: datetime


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's answer to one claimed attempt, with what recording it depends on."""

    result: SendResult
    provider: str
    #: Sending the same notification again cannot reach the recipient twice (see ``Provider.dedupes``).
    dedupes: bool
    token: str
    attempts: int
    channel: Channel
    to: str
    customer_id: str | None
    #: The daily counters this delivery took (given back if it provably did not go out).
    slot: DailySlot | None
    #: The recipient's suppression-list key (a keyed hash), for a provider's opt-out.
    address_key: str | None = None


# ---- transitions --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Suppression:
    """Entries to add to the suppression list, and why."""

    entries: tuple[SuppressionEntry, ...]
    reason: str
    source: str


@dataclass(frozen=True, slots=True)
class Final:
    """Record a final status and its outcome event, if the row is still in ``from_statuses``.

    ``suppress`` and ``release`` apply first (and whether or not the row changed); ``dead_letter`` is
    the reason to dead-letter the request with once the status is recorded.
    """

    status: OutcomeStatus
    reason: str | None
    detail: str | None
    provider: str
    #: The attempt count to report; None: the row's.
    attempts: int | None = None
    #: Only if this attempt still owns the row; None: whoever does.
    token: str | None = None
    from_statuses: tuple[str, ...] = ("pending", "sending")
    provider_message_id: str | None = None
    release: DailySlot | None = None
    suppress: Suppression | None = None
    dead_letter: str | None = None


@dataclass(frozen=True, slots=True)
class Reschedule:
    """Back to 'pending' until ``at``; with ``token``, only if that attempt still owns the row."""

    at: datetime
    reason: str
    error: str | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Defer:
    """Quiet hours: back to 'pending' until ``until``, with a 'deferred' outcome event."""

    until: datetime
    provider: str
    reason: str = "quiet_hours"
    detail: str = "quiet hours in the recipient's time zone"


@dataclass(frozen=True, slots=True)
class Admit:
    """Consent and timing allow the message: compose it, once the daily slot (if any) is reserved."""

    address: Address
    provider: str
    #: A slot to reserve before sending (None: not capped, or counted by an earlier attempt).
    reserve: DailySlot | None
    #: The day this delivery counts against the cap, once ``reserve`` succeeded.
    counted_day: date | None


@dataclass(frozen=True, slots=True)
class Send:
    """Claim the row and hand ``message`` to the provider."""

    message: Message
    attempts: int
    counted_day: date | None
    slot: DailySlot | None = None
    address_key: str | None = None


# ---- preparing a due delivery -------------------------------------------------------------------------
def address_of(note: NotificationRequested, default: str | None, keys: AddressKeys) -> Address | None:
    """The recipient's address (SMS numbers in E.164, as providers want them), or the channel's default."""
    r = note.recipient
    to = {
        Channel.EMAIL: r.email,
        Channel.SMS: r.phone,
        Channel.SLACK: r.url,
        Channel.WEBHOOK: r.url,
        Channel.IN_APP: note.customer_id,  # the widget of that customer: no address
    }[note.channel] or default
    if not to:
        return None
    if note.channel is Channel.SMS:
        to = normalise_address("sms", to)
    scope = ADDRESS_SCOPE.get(note.channel)
    if scope is None:
        return Address(to=to, scope=None, key=None)
    return Address(to=to, scope=scope, key=keys.key(scope, to), candidates=keys.candidates(scope, to))


def slot_for(
    note: NotificationRequested, address: Address | None, day: date, cfg: DispatchConfig
) -> DailySlot | None:
    """The daily counters a customer-facing message takes: those whose cap is on and that apply to it."""
    if note.transactional:
        return None
    slot = DailySlot(
        day=day,
        customer_id=note.customer_id if cfg.daily_cap else None,
        address_key=f"{address.scope}:{address.key}" if cfg.address_cap and address and address.key else None,
        source=note.source if cfg.source_cap else None,
    )
    return slot if slot.customer_id or slot.address_key or slot.source else None


def admit(due: Due, cfg: DispatchConfig) -> Final | Defer | Admit:
    """Consent, quiet hours and the daily caps; internal (transactional) messages skip all of them."""
    note, address = due.note, due.address
    if address is None:
        return Final(OutcomeStatus.FAILED, "no_address", "no recipient address", due.provider)
    if note.transactional:
        return Admit(address, due.provider, reserve=None, counted_day=due.row.counted_day)
    if due.suppressed is not None:
        detail = f"on the suppression list ({due.suppressed})"
        return Final(OutcomeStatus.SUPPRESSED, "opted_out", detail, due.provider)
    zone = zone_for(note.recipient.timezone, cfg.default_zone)
    if note.channel is Channel.SMS and cfg.quiet is not None:
        until = cfg.quiet.deferral(due.now, zone)
        if until is not None:
            return Defer(until=until.astimezone(UTC), provider=due.provider)
    if due.row.counted_day is None:
        slot = slot_for(note, address, local_day(due.now, zone), cfg)
        if slot is not None:
            return Admit(address, due.provider, reserve=slot, counted_day=slot.day)
    return Admit(address, due.provider, reserve=None, counted_day=due.row.counted_day)


#: Which cap refused a message: its outcome reason and how the detail names it.
_CAP_REFUSALS = {
    "customer": ("daily_cap", "daily cap of {n} messages reached"),
    "address": ("address_cap", "daily cap of {n} messages to this address reached"),
    "source": ("source_cap", "daily cap of {n} messages for this source reached"),
}


def over_daily_cap(due: Due, cfg: DispatchConfig, *, cap: str = "customer") -> Final:
    """One of the message's daily counters is full (``Admit.reserve`` was refused): ``cap`` names it."""
    reason, detail = _CAP_REFUSALS[cap]
    limit = {"customer": cfg.daily_cap, "address": cfg.address_cap, "source": cfg.source_cap}[cap]
    return Final(OutcomeStatus.SUPPRESSED, reason, detail.format(n=limit), due.provider)


def compose(
    due: Due, admitted: Admit, cfg: DispatchConfig, *, templates: Templates, tokens: UnsubscribeTokens
) -> Final | Send:
    """Unsubscribe link and headers (RFC 8058) for customer messages, then the rendered message."""
    note, address = due.note, admitted.address
    context = dict(note.context)
    headers: dict[str, str] = {}
    if not note.transactional and address.scope is not None and address.key is not None:
        claim = UnsubscribeClaim(
            customer_id=note.customer_id,
            scope=address.scope,
            address_key=address.key,
            notification_id=note.notification_id,
            locale=note.locale,
        )
        token = quote_id(tokens.make(claim))
        url = f"{cfg.public_base_url.rstrip('/')}/u/{token}"
        context["unsubscribe_url"] = url
        if note.channel is Channel.EMAIL:
            targets = [f"<{url}>"]
            if cfg.unsubscribe_mailto:
                targets.append(f"<mailto:{cfg.unsubscribe_mailto}?subject=unsubscribe%20{token}>")
            headers["List-Unsubscribe"] = ", ".join(targets)
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    slot = slot_for(note, address, admitted.counted_day, cfg) if admitted.counted_day else None
    html: str | None = None
    try:
        if note.template == SURVEY_TEMPLATE:
            subject, body, html = render_survey(note, context, allow_http=cfg.allow_http_links)
        else:
            rendered = templates.render(note.template, note.locale, context, channel=note.channel.value)
            subject, body = rendered.subject, rendered.body
    except (TemplateMissing, TemplateBroken) as exc:
        return Final(OutcomeStatus.FAILED, "template", str(exc), due.provider, release=slot)
    message = Message(
        notification_id=note.notification_id,
        channel=note.channel,
        to=address.to,
        subject=subject,
        body=body,
        html=html,
        rule_id=note.rule_id,
        customer_id=note.customer_id,
        transactional=note.transactional,
        headers=headers,
        data=note.model_dump(mode="json", exclude={"recipient", "notification_id"}),
    )
    return Send(
        message=message,
        attempts=due.row.attempts + 1,
        counted_day=admitted.counted_day,
        slot=slot,
        address_key=address.key,
    )


def render_survey(
    note: NotificationRequested, context: Mapping[str, Any], *, allow_http: bool
) -> tuple[str | None, str, str | None]:
    """A survey invitation (or its reminder): multipart email with one-click score buttons, or the SMS
    with "reply 1-5"; an email whose HTML fails the mail-client check is not sent (``TemplateBroken``)."""
    survey = context.get("survey")
    if not isinstance(survey, Mapping):
        raise TemplateBroken("a survey invitation needs context.survey")
    try:
        if note.channel is Channel.IN_APP:
            # The collector keeps the signed link; the widget reads the question from it.
            return None, str(survey["question"]), None
        if note.channel is Channel.SMS:
            text = render_survey_sms(
                locale=note.locale,
                metric=survey["metric"],
                scale=survey["scale"],
                question=survey["question"],
            )
            return None, text, None
        email = render_survey_email(
            SurveyInvitation(
                locale=note.locale,
                metric=survey["metric"],
                scale=survey["scale"],
                question=survey["question"],
                answer_url=survey["answer_url"],
                unsubscribe_url=str(context.get("unsubscribe_url") or ""),
                expires_at=datetime.fromisoformat(survey["expires_at"]),
                brand=str(survey.get("brand") or "CSAT"),
                follow_up=survey.get("follow_up"),
                reminder=bool(survey.get("reminder")),
            )
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise TemplateBroken(f"survey invitation: {type(exc).__name__}: {exc}") from exc
    problems = mailsafe.check(email.html, allow_http=allow_http)
    if problems:
        raise TemplateBroken("survey email is not mail-client safe: " + "; ".join(map(str, problems[:3])))
    return email.subject, email.text, email.html


def internal_error(row: DeliveryRow, exc: BaseException) -> Final:
    """A row that broke its preparation (e.g. a stored request this release cannot read)."""
    detail = f"internal error: {type(exc).__name__}"
    return Final(OutcomeStatus.FAILED, "internal", detail, row.provider)


# ---- recording an answer ------------------------------------------------------------------------------
def record(
    answer: Answer, cfg: DispatchConfig, *, now: datetime, rng: random.Random | None = None
) -> Final | Reschedule:
    """Turn a provider's answer into the row's next state (the claim token proves the attempt owns it).

    An answer that may hide an acceptance (timeout after sending) is retried only where the provider
    dedupes; anywhere else it is recorded ``unknown`` and never sent again.
    """
    result, name, token, attempts = answer.result, answer.provider, answer.token, answer.attempts
    verdict = result.verdict
    if verdict is Verdict.AMBIGUOUS and answer.dedupes:
        verdict = Verdict.RETRY
    release = answer.slot
    if verdict is Verdict.ACCEPTED:
        # From 'unknown' too: an answer arriving after its lease ran out still records the truth.
        return Final(
            OutcomeStatus.SENT,
            None,
            None,
            name,
            attempts=attempts,
            token=token,
            from_statuses=("sending", "unknown"),
            provider_message_id=result.provider_message_id,
        )
    if verdict is Verdict.RETRY and attempts < cfg.max_attempts:
        delay = backoff_delay(
            attempts, base=cfg.retry_base_s, cap=cfg.retry_cap_s, retry_after=result.retry_after_s, rng=rng
        )
        at = now + timedelta(seconds=delay)
        return Reschedule(at=at, reason=f"retry:{result.kind}", error=result.detail, token=token)
    if verdict is Verdict.RETRY:
        return exhausted(provider=name, token=token, attempts=attempts, release=release, detail=result.detail)
    if verdict is Verdict.AMBIGUOUS:
        detail = f"{result.detail}; not resent: {name} takes no idempotency key"
        return Final(OutcomeStatus.UNKNOWN, "ambiguous", detail, name, attempts=attempts, token=token)
    if verdict is Verdict.RECIPIENT_OPTED_OUT:
        entries = []
        scope = ADDRESS_SCOPE.get(answer.channel)
        if scope is not None and answer.address_key is not None:
            entries.append(SuppressionEntry(scope, answer.address_key))
        if answer.channel is Channel.SMS and answer.customer_id:
            entries.append(SuppressionEntry("customer", answer.customer_id))
        return Final(
            OutcomeStatus.SUPPRESSED,
            "provider_opt_out",
            result.detail,
            name,
            attempts=attempts,
            token=token,
            release=release,
            suppress=Suppression(tuple(entries), reason="provider_opt_out", source=name),
        )
    return Final(
        OutcomeStatus.FAILED, "rejected", result.detail, name, attempts=attempts, token=token, release=release
    )


def exhausted(
    *, provider: str, token: str | None, attempts: int, release: DailySlot | None, detail: str | None
) -> Final:
    """No attempts left: failed, its daily slot given back, the request dead-lettered."""
    reason = f"gave up after {attempts} attempts: {detail or 'no detail'}"
    return Final(
        OutcomeStatus.FAILED,
        "exhausted",
        reason,
        provider,
        attempts=attempts,
        token=token,
        release=release,
        dead_letter=reason,
    )


# ---- crash recovery -----------------------------------------------------------------------------------
def recover(
    row: DeliveryRow, *, dedupes: bool, cfg: DispatchConfig, now: datetime, release: DailySlot | None = None
) -> Final | Reschedule:
    """An attempt whose lease ran out: its sender died between calling the provider and recording.

    A provider that dedupes is simply called again; any other may have delivered, so the attempt is
    recorded ``unknown`` and never sent again: a customer never gets the same message twice.
    """
    if dedupes and row.attempts >= cfg.max_attempts:
        return exhausted(
            provider=row.provider,
            token=row.claim_token,
            attempts=row.attempts,
            release=release,
            detail="the last attempt's sender stopped before recording an answer",
        )
    if dedupes:
        return Reschedule(at=now, reason="recovered")
    detail = (
        f"the notifier stopped after calling {row.provider} and before recording its answer; "
        "not resent, to avoid a duplicate"
    )
    return Final(
        OutcomeStatus.UNKNOWN,
        "crashed_mid_send",
        detail,
        row.provider,
        token=row.claim_token,
        from_statuses=("sending",),
    )


def counted_slot(row: DeliveryRow, cfg: DispatchConfig) -> DailySlot | None:
    """The daily counters a delivery took, from its stored request (its lease ran out mid-send)."""
    if row.counted_day is None or row.transactional:
        return None
    note = NotificationRequested.model_validate(row.request)
    return slot_for(note, address_of(note, None, cfg.address_keys), row.counted_day, cfg)
