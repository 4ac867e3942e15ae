"""The actions HTTP API, one router per audience: rules (CX managers), alerts (CSMs), customers (CRM
sync), ops (decisions and timers, for whoever investigates what happened)."""
