"""Contracts other teams subscribe from: a JSON Schema per event type and an AsyncAPI 3 document.

Both are generated from ``shared.events`` and ``shared.topics`` (``csat contracts`` writes them to
``contracts/``; a test fails when the committed files are stale), so the contract cannot drift from
what the services actually produce. Pure code: builds dictionaries, the CLI writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from shared import events as ev
from shared import topics as tp

SCHEMA_BASE = "https://csat.dev/schemas/"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True, slots=True)
class EventDoc:
    type: str
    message: str
    summary: str


EVENTS: tuple[EventDoc, ...] = (
    EventDoc(
        ev.RATING_SUBMITTED, "RatingSubmitted", "A validated, normalised rating accepted by the collector."
    ),
    EventDoc(
        ev.SCORE_CHANGED,
        "ScoreChanged",
        "A segment's rolling score moved (global, one attribute or a combination).",
    ),
    EventDoc(
        ev.SEGMENT_ALERT,
        "SegmentAlert",
        "A segment fell below its threshold, or its drift detector confirmed a drop.",
    ),
    EventDoc(
        ev.ACTION_DECIDED, "ActionDecided", "A follow-up rule fired for a rating and an action was decided."
    ),
    EventDoc(
        ev.NOTIFICATION_REQUESTED,
        "NotificationRequested",
        "Ask the notifier to send one message (deterministic id).",
    ),
    EventDoc(
        ev.NOTIFICATION_OUTCOME,
        "NotificationOutcome",
        "What happened to one notification: sent, failed, suppressed...",
    ),
    EventDoc(
        ev.INTERACTION_RECORDED,
        "InteractionRecorded",
        "Something that happened to a customer (ticket solved, order delivered) that a survey may follow.",
    ),
    EventDoc(
        ev.DEAD_LETTER,
        "DeadLetter",
        "A record a consumer could not use, with the reason and the original bytes.",
    ),
    EventDoc(
        ev.USAGE_OBSERVED,
        "UsageObserved",
        "A dated observation of named usage signals (logins, features used...) for a customer or account.",
    ),
    EventDoc(
        ev.CUSTOMER_ERASED,
        "CustomerErased",
        "A customer's erasure (GDPR art. 17): remove or pseudonymise what you hold about them.",
    ),
    EventDoc(
        ev.HEALTH_CHANGED,
        "HealthChanged",
        "An account's health score or band moved, with the contribution of each component.",
    ),
    EventDoc(
        ev.SURVEY_INVITED,
        "SurveyInvited",
        "A survey invitation went out; answers are ratings whose survey_id is its invitation_id.",
    ),
    EventDoc(
        ev.SURVEY_OUTCOME,
        "SurveyOutcome",
        "What became of a survey invitation: sent, failed, suppressed, or answered (first answer only).",
    ),
)


@dataclass(frozen=True, slots=True)
class TopicDoc:
    channel: str
    address: str
    key: str
    events: tuple[str, ...]
    producer: str
    consumers: tuple[str, ...]
    description: str


TOPICS: tuple[TopicDoc, ...] = (
    TopicDoc(
        "ratings",
        tp.RATINGS,
        "customer id (a customer's ratings stay in order)",
        (ev.RATING_SUBMITTED,),
        "collector",
        ("scorer", "actions"),
        "Every rating the collector accepted; the 202 answer is only given once this record is acknowledged "
        "by all in-sync replicas.",
    ),
    TopicDoc(
        "scores",
        tp.SCORES,
        "segment key: `*` (global), `store=paris-1`, `channel=chat|store=paris-1`",
        (ev.SCORE_CHANGED, ev.SEGMENT_ALERT),
        "scorer",
        ("actions",),
        "Score movements per segment and segment alerts, keyed by segment so each segment's history "
        "is ordered.",
    ),
    TopicDoc(
        "actions",
        tp.ACTIONS,
        "customer id",
        (ev.ACTION_DECIDED,),
        "actions",
        (),
        "Audit stream of the follow-up decisions the rules took.",
    ),
    TopicDoc(
        "notifications",
        tp.NOTIFICATIONS,
        "customer id",
        (ev.NOTIFICATION_REQUESTED,),
        "actions",
        ("notifier",),
        "Messages to send; `notification_id` is deterministic so a replay is deduplicated by the notifier.",
    ),
    TopicDoc(
        "outcomes",
        tp.OUTCOMES,
        "customer id (notification id when there is none)",
        (ev.NOTIFICATION_OUTCOME,),
        "notifier",
        (),
        "The final outcome of every notification.",
    ),
    TopicDoc(
        "interactions",
        tp.INTERACTIONS,
        "customer id (a customer's interactions stay in order)",
        (ev.INTERACTION_RECORDED,),
        "collector",
        ("actions",),
        "Interactions accepted by the collector (`POST /v1/interactions`, helpdesk webhooks) or published "
        "directly by another system with the same schema; the survey definitions decide which are followed "
        "by a survey.",
    ),
    TopicDoc(
        "dlqScorer",
        tp.DLQ_SCORER,
        "`<topic>:<partition>` of the failed record",
        (ev.DEAD_LETTER,),
        "scorer",
        (),
        "Records the scorer could not use (header `ce_dlqreason` gives the reason kind).",
    ),
    TopicDoc(
        "dlqActions",
        tp.DLQ_ACTIONS,
        "`<topic>:<partition>` of the failed record",
        (ev.DEAD_LETTER,),
        "actions",
        (),
        "Records the actions service could not use (header `ce_dlqreason` gives the reason kind).",
    ),
    TopicDoc(
        "dlqNotifier",
        tp.DLQ_NOTIFIER,
        "`<topic>:<partition>` of the failed record",
        (ev.DEAD_LETTER,),
        "notifier",
        (),
        "Records the notifier could not use (header `ce_dlqreason` gives the reason kind).",
    ),
    TopicDoc(
        "dlqCollector",
        tp.DLQ_COLLECTOR,
        "`<topic>:<partition>` of the failed record",
        (ev.DEAD_LETTER,),
        "collector",
        (),
        "Erasure records the collector could not use (header `ce_dlqreason` gives the reason kind).",
    ),
    TopicDoc(
        "usage",
        tp.USAGE,
        "account id, else customer id (an account's observations stay in order)",
        (ev.USAGE_OBSERVED,),
        "collector",
        (),
        "Usage signals from product analytics (logins, features used, data volume, open tickets, active "
        "seats...), one dated observation per record; the account health score reads them.",
    ),
    TopicDoc(
        "customersErased",
        tp.CUSTOMERS_ERASED,
        "customer id",
        (ev.CUSTOMER_ERASED,),
        "console",
        ("collector", "scorer", "actions", "notifier"),
        "Erasure requests (GDPR art. 17), one per customer and request: each subscriber removes or "
        "pseudonymises email, phone, comments and free text it holds for the customer in one transaction "
        "with its offsets, and cancels pending messages and timers; ratings stay counted.",
    ),
    TopicDoc(
        "health",
        tp.HEALTH,
        "subject id (account id, else customer id)",
        (ev.HEALTH_CHANGED,),
        "actions",
        (),
        "Account health: one record each time a subject's score or band moves (not on every "
        "recomputation), with the explanation; `fell` says the band got worse.",
    ),
    TopicDoc(
        "surveysInvited",
        tp.SURVEYS_INVITED,
        "customer id",
        (ev.SURVEY_INVITED,),
        "actions",
        ("scorer",),
        "One record per survey invitation sent (not per reminder), with its segment: the scorer counts "
        "invitations and their answers (ratings carrying the invitation id as `survey_id`) into each "
        "segment's response rate.",
    ),
    TopicDoc(
        "surveysOutcomes",
        tp.SURVEYS_OUTCOMES,
        "customer id (an invitation's outcomes stay in order)",
        (ev.SURVEY_OUTCOME,),
        "actions",
        (),
        "What became of each survey invitation: `sent`, `failed` or `suppressed` (the notifier's outcome of "
        "the invitation's message, not its reminder's) and `answered` (the first answer only; a re-click "
        "publishes nothing). One record per (invitation, outcome), published only when the invitation's "
        "state changed; the event id `survey-outcome-<invitation_id>-<outcome>` is deterministic, so "
        "deduplicate on it. An answer before the delivery outcome publishes `sent` (inferred) then "
        "`answered`.",
    ),
)


def schema_file(event_type: str) -> str:
    return f"{event_type}.json"


def event_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one event type's ``data``, as consumers validate it."""
    model = ev.EVENT_MODELS[event_type]
    doc = next(d for d in EVENTS if d.type == event_type)
    body = model.model_json_schema(mode="validation")
    return {
        "$schema": DIALECT,
        "$id": SCHEMA_BASE + schema_file(event_type),
        "title": doc.message,
        "description": f"{doc.summary} CloudEvents type `{event_type}`, data content type application/json.",
        **{k: v for k, v in body.items() if k not in ("title", "description")},
    }


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema for every event type (every type in ``EVENT_MODELS`` must be documented)."""
    documented = {d.type for d in EVENTS}
    missing = set(ev.EVENT_MODELS) - documented
    if missing:
        raise LookupError(f"event types without documentation in shared/contracts.py: {sorted(missing)}")
    return {schema_file(t): event_schema(t) for t in ev.EVENT_MODELS}


def _headers(event_type: str) -> dict[str, Any]:
    """Kafka headers of CloudEvents binary mode for one event type."""
    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "content-type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {
                "type": "string",
                "description": "Unique per source; deterministic, so replays dedupe.",
            },
            "ce_type": {"type": "string", "const": event_type},
            "ce_source": {"type": "string", "description": "The producing service, e.g. `/collector`."},
            "ce_time": {"type": "string", "format": "date-time"},
            "ce_subject": {"type": "string"},
            "ce_traceparent": {
                "type": "string",
                "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C Trace Context (CloudEvents distributed-tracing extension); consumers "
                "continue the trace.",
            },
            "ce_dlqreason": {"type": "string", "description": "Dead letters only: the reason kind."},
            "content-type": {"type": "string", "const": "application/json"},
        },
    }


def _messages() -> dict[str, Any]:
    """One AsyncAPI message per event type: CloudEvents headers, payload by reference to its schema."""
    return {
        doc.message: {
            "name": doc.message,
            "title": doc.type,
            "summary": doc.summary,
            "contentType": "application/json",
            "headers": _headers(doc.type),
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-07",
                "schema": {"$ref": f"./schemas/{schema_file(doc.type)}"},
            },
            "bindings": {"kafka": {"key": {"type": "string"}, "bindingVersion": "0.5.0"}},
        }
        for doc in EVENTS
    }


def _channels() -> dict[str, Any]:
    """One channel per topic: its address, key, producer and the messages it carries."""
    by_type = {d.type: d.message for d in EVENTS}
    return {
        topic.channel: {
            "address": topic.address,
            "title": topic.address,
            "description": f"{topic.description}\n\nKey: {topic.key}. "
            f"Producer: the {topic.producer} service.",
            "messages": {by_type[t]: {"$ref": f"#/components/messages/{by_type[t]}"} for t in topic.events},
            "bindings": {
                "kafka": {
                    "topic": topic.address,
                    "partitions": 6,
                    "replicas": 3,
                    "topicConfiguration": {"cleanup.policy": ["delete"], "retention.ms": 604800000},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        for topic in TOPICS
    }


def _operations() -> dict[str, Any]:
    """Who sends on and who receives from each channel (one consumer group per consuming service)."""
    operations: dict[str, Any] = {}
    for topic in TOPICS:
        ref = {"$ref": f"#/channels/{topic.channel}"}
        operations[f"{topic.producer}Publishes{_cap(topic.channel)}"] = {
            "action": "send",
            "channel": ref,
            "summary": f"The {topic.producer} publishes on {topic.address}.",
        }
        for consumer in topic.consumers:
            operations[f"{consumer}Consumes{_cap(topic.channel)}"] = {
                "action": "receive",
                "channel": ref,
                "summary": f"The {consumer} consumes {topic.address} (consumer group csat-{consumer}).",
            }
    return operations


def asyncapi(*, version: str = "1.0.0") -> dict[str, Any]:
    """The AsyncAPI 3 document for every topic, payloads referencing the generated JSON Schemas."""
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CSAT platform events",
            "version": version,
            "description": "Topics of the CSAT platform. Every record is a CloudEvents 1.0 event in Kafka "
            "binary mode: attributes in `ce_*` headers, `data` as the JSON value. Payload schemas are in "
            "`schemas/`, one per event type. A deployment may prefix every topic name "
            "(`CSAT_TOPIC_PREFIX`). Consumers should ignore unknown fields: new optional fields are added "
            "without a version bump; incompatible changes get a new `.vN` topic and type.",
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "production": {
                "host": "csat-kafka-kafka-bootstrap:9092",
                "protocol": "kafka",
                "description": "Apache Kafka run by Strimzi in the platform's namespace (deploy/k8s).",
            },
            "development": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "`make run`: the embedded Kafka-protocol broker.",
            },
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": {"messages": _messages()},
    }


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


GENERATED_NOTE = "# Generated by `csat contracts` from shared/events.py and shared/topics.py; do not edit.\n"


def render_files() -> dict[str, str]:
    """Relative path under ``contracts/`` -> file text, exactly as committed."""
    files = {
        f"schemas/{name}": json.dumps(schema, indent=2, sort_keys=False) + "\n"
        for name, schema in all_schemas().items()
    }
    files["asyncapi.yaml"] = GENERATED_NOTE + yaml.safe_dump(
        asyncapi(), sort_keys=False, allow_unicode=True, width=100
    )
    return files
