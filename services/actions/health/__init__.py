"""Account health: satisfaction and usage turned into one explainable 0-100 score per customer and account.

``model`` is the declarative model (YAML, validated at the field), ``evidence`` the facts it reads
(ratings, usage observations, open alerts), ``normalise`` the value -> 0-100 maps, ``score`` the
computation with its explanation, ``transitions`` the bands over time. All pure: no clock, no I/O.
"""
