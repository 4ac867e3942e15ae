"""HTTP routes by audience: ratings (clients with a source key), admin (operators), channels (people)."""
