"""Console: the web application people sign in to (sessions, identity API, the views to come)."""
