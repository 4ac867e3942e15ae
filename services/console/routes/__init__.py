"""The console's routers by audience: ``auth`` (signing in and out), ``pages`` (home, views),
``admin`` (people & tokens page), ``api`` (the identity JSON API and the public keys)."""
