"""Development and test infrastructure: embedded broker and PostgreSQL, and the whole-stack runner."""
