"""Who is calling and what they may do: roles, scopes, principals, tokens, passwords and their store.

Pure modules (``scopes``, ``principal``, ``apitokens``, ``sourcekeys``, ``accesstokens``, ``passwords``,
``accounts``, ``config``) import no database or web framework; ``guard`` is the FastAPI side and
``repository`` the PostgreSQL adapter of the ports in ``ports``. ``docs/security.md`` explains the model.
"""
