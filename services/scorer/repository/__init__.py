"""The scorer's PostgreSQL adapters, one module per concern.

``writes`` (the consumer's hot path and the replay's counting), ``registry`` (segment values within
the caps), ``reads`` (the query API and the gauges), ``events`` (the score-event evaluator's state),
``maintenance`` (retention), ``replay`` (rebuilding every counter); ``tables`` names the tables and
advisory locks they share.
"""
