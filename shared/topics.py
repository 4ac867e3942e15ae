"""Topic names, versioned; a prefix lets tests and tenants run side by side on one broker."""

from __future__ import annotations

from dataclasses import dataclass

RATINGS = "csat.ratings.submitted.v1"
SCORES = "csat.scores.changed.v1"
ACTIONS = "csat.actions.decided.v1"
NOTIFICATIONS = "csat.notifications.requested.v1"
OUTCOMES = "csat.notifications.outcomes.v1"
DLQ_SCORER = "csat.dlq.scorer.v1"
DLQ_ACTIONS = "csat.dlq.actions.v1"
DLQ_NOTIFIER = "csat.dlq.notifier.v1"
DLQ_COLLECTOR = "csat.dlq.collector.v1"
INTERACTIONS = "csat.interactions.v1"
USAGE = "csat.usage.v1"
CUSTOMERS_ERASED = "csat.customers.erased.v1"
HEALTH = "csat.health.changed.v1"
SURVEYS_INVITED = "csat.surveys.invited.v1"
SURVEYS_OUTCOMES = "csat.surveys.outcomes.v1"


@dataclass(frozen=True, slots=True)
class Topics:
    """All topic names for one deployment; ``prefix`` is prepended verbatim (e.g. ``test-1a2b.``)."""

    prefix: str = ""

    def _p(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def ratings(self) -> str:
        return self._p(RATINGS)

    @property
    def scores(self) -> str:
        return self._p(SCORES)

    @property
    def actions(self) -> str:
        return self._p(ACTIONS)

    @property
    def notifications(self) -> str:
        return self._p(NOTIFICATIONS)

    @property
    def outcomes(self) -> str:
        return self._p(OUTCOMES)

    @property
    def interactions(self) -> str:
        return self._p(INTERACTIONS)

    @property
    def dlq_scorer(self) -> str:
        return self._p(DLQ_SCORER)

    @property
    def dlq_actions(self) -> str:
        return self._p(DLQ_ACTIONS)

    @property
    def dlq_notifier(self) -> str:
        return self._p(DLQ_NOTIFIER)

    @property
    def dlq_collector(self) -> str:
        return self._p(DLQ_COLLECTOR)

    @property
    def usage(self) -> str:
        return self._p(USAGE)

    @property
    def customers_erased(self) -> str:
        return self._p(CUSTOMERS_ERASED)

    @property
    def health(self) -> str:
        return self._p(HEALTH)

    @property
    def surveys_invited(self) -> str:
        return self._p(SURVEYS_INVITED)

    @property
    def surveys_outcomes(self) -> str:
        return self._p(SURVEYS_OUTCOMES)

    def all(self) -> list[str]:
        return [
            self.ratings,
            self.scores,
            self.actions,
            self.notifications,
            self.outcomes,
            self.dlq_scorer,
            self.dlq_actions,
            self.dlq_notifier,
            self.interactions,
            self.usage,
            self.customers_erased,
            self.dlq_collector,
            self.health,
            self.surveys_invited,
            self.surveys_outcomes,
        ]
