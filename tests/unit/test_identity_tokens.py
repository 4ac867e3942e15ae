"""API tokens, bootstrap key and console access tokens, verified the one way every service will."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from shared.http import install_common
from shared.identity.accesstokens import (
    AccessTokenIssuer,
    AccessTokenVerifier,
    InvalidAccessToken,
    InvalidKey,
    KeyRing,
    SigningKey,
)
from shared.identity.apitokens import (
    api_token_id,
    generate_api_token,
    generate_session,
    hash_secret,
    session_hash,
)
from shared.identity.guard import Authenticator, AuthError
from shared.identity.ports import NewTokenRecord
from shared.identity.principal import Principal, PrincipalKind, parse_grants
from shared.identity.scopes import ROLE_SCOPES, Role, Scope
from tests.fakes.identity_store import MemoryIdentityStore

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
BOOTSTRAP = "b" * 8 + "x7Qz-K2mP9sLr4Vw8NcY1tHj6GdFa3Ue"


class Clock:
    """A monotonic clock and a wall clock moved by hand."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = NOW

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


# ---- token formats ---------------------------------------------------------------------------------
def test_api_tokens_are_unique_prefixed_and_hashed() -> None:
    one, two = generate_api_token(), generate_api_token()
    assert one.secret != two.secret and one.token_id != two.token_id
    assert one.secret.startswith(f"csat_{one.token_id}_") and len(one.secret) == 5 + 12 + 1 + 43
    assert one.token_hash == hash_secret(one.secret) and len(one.token_hash) == 32
    assert api_token_id(one.secret) == one.token_id


@pytest.mark.parametrize(
    "credential",
    [
        "",
        "csat_",
        "csat_0123456789ab_short",
        "csat_0123456789AB_" + "a" * 43,  # upper-case id
        "csat_0123456789ab_" + "a" * 42,
        "csat_0123456789ab_" + "a" * 44,
        "csat_0123456789ab_" + "a" * 42 + "!",
        "csk_0123456789_" + "a" * 32,
        " csat_0123456789ab_" + "a" * 43,
    ],
)
def test_malformed_api_tokens_have_no_id(credential: str) -> None:
    assert api_token_id(credential) is None


def test_session_cookies_hash_only_when_well_formed() -> None:
    new = generate_session()
    assert session_hash(new.secret) == new.session_hash
    assert session_hash("") is None and session_hash(new.secret + "x") is None


# ---- the authenticator with API tokens ---------------------------------------------------------------
async def _store_with_token(
    *, expires_at: datetime | None = None, role: Role = Role.MANAGER, scopes: set[Scope] | None = None
) -> tuple[MemoryIdentityStore, str, str]:
    store = MemoryIdentityStore()
    new = generate_api_token()
    await store.add_token(
        token=NewTokenRecord(
            token_id=new.token_id,
            name="bi",
            role=role,
            scopes=frozenset(scopes or {Scope.SCORES_READ}),
            created_by="person:u_1",
            expires_at=expires_at,
            segments=parse_grants(["store:paris-1"]),
        ),
        token_hash=new.token_hash,
    )
    return store, new.secret, new.token_id


def _auth(store: MemoryIdentityStore, clock: Clock, **kwargs: object) -> Authenticator:
    return Authenticator(
        service="test",
        tokens=store,
        bootstrap_key=kwargs.pop("bootstrap_key", BOOTSTRAP),  # type: ignore[arg-type] # test helper
        monotonic=lambda: clock.mono,
        now=lambda: clock.wall,
        **kwargs,  # type: ignore[arg-type] # test helper forwards keyword settings
    )


async def test_a_valid_token_gives_its_principal() -> None:
    store, secret, token_id = await _store_with_token()
    principal = await _auth(store, Clock()).authenticate(secret)
    assert principal == Principal(
        subject=token_id,
        kind=PrincipalKind.TOKEN,
        role=Role.MANAGER,
        scopes=frozenset({Scope.SCORES_READ}),
        segments=parse_grants(["store:paris-1"]),
    )


async def test_a_token_never_carries_more_than_its_role() -> None:
    store, secret, _ = await _store_with_token(role=Role.VIEWER, scopes={Scope.SCORES_READ, Scope.GDPR_ADMIN})
    principal = await _auth(store, Clock()).authenticate(secret)
    assert principal.scopes == {Scope.SCORES_READ}


@pytest.mark.parametrize("credential", [None, "", "   ", "\t"])
async def test_a_missing_or_empty_credential_is_never_accepted(credential: str | None) -> None:
    store, _, _ = await _store_with_token()
    for auth in (_auth(store, Clock()), _auth(store, Clock(), bootstrap_key="")):
        with pytest.raises(AuthError) as caught:
            await auth.authenticate(credential)
        assert (caught.value.status, caught.value.reason) == (401, "missing")
    assert store.lookups == 0


@pytest.mark.parametrize(
    "credential",
    [
        "dev-admin-key",
        BOOTSTRAP[:-1],
        BOOTSTRAP + "x",
        "csat_0123456789ab_" + "a" * 43,  # well-formed, unknown
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",  # a JWT without signature, and no keys configured
        BOOTSTRAP + "\ud800",  # not encodable: refused, not a 500
        BOOTSTRAP + "\x00",
        "x" * 100_000,
    ],
)
async def test_unknown_credentials_are_refused(credential: str) -> None:
    store, _, _ = await _store_with_token()
    with pytest.raises(AuthError) as caught:
        await _auth(store, Clock()).authenticate(credential)
    assert caught.value.status == 401


async def test_expiry_is_exact_even_inside_the_cache() -> None:
    clock = Clock()
    store, secret, _ = await _store_with_token(expires_at=NOW + timedelta(seconds=10))
    auth = _auth(store, clock, cache_s=30.0)
    await auth.authenticate(secret)
    clock.advance(10)
    with pytest.raises(AuthError, match="not valid"):
        await auth.authenticate(secret)
    assert store.lookups == 1  # the cached record was checked against the clock, not looked up again


async def test_revocation_takes_effect_within_the_cache_bound() -> None:
    clock = Clock()
    store, secret, token_id = await _store_with_token()
    auth = _auth(store, clock, cache_s=30.0)
    await auth.authenticate(secret)
    await store.revoke_token(token_id=token_id, by="person:u_1", at=clock.wall)
    clock.advance(29.9)
    assert (await auth.authenticate(secret)).subject == token_id  # another replica revoked it: cached
    clock.advance(0.1)
    with pytest.raises(AuthError):
        await auth.authenticate(secret)
    assert store.lookups == 2


async def test_forget_makes_a_local_revocation_immediate() -> None:
    clock = Clock()
    store, secret, token_id = await _store_with_token()
    auth = _auth(store, clock, cache_s=30.0)
    await auth.authenticate(secret)
    await store.revoke_token(token_id=token_id, by="person:u_1", at=clock.wall)
    auth.forget()
    with pytest.raises(AuthError):
        await auth.authenticate(secret)


async def test_unknown_tokens_are_cached_too() -> None:
    clock = Clock()
    store, _, _ = await _store_with_token()
    auth = _auth(store, clock)
    unknown = generate_api_token().secret
    for _ in range(3):
        with pytest.raises(AuthError):
            await auth.authenticate(unknown)
    assert store.lookups == 1


async def test_a_down_store_answers_503_unless_a_known_token_is_within_its_stale_bound() -> None:
    clock = Clock()
    store, secret, token_id = await _store_with_token()
    strict, lenient = _auth(store, clock, cache_s=1.0), _auth(store, clock, cache_s=1.0, stale_s=60.0)
    for auth in (strict, lenient):
        await auth.authenticate(secret)
    store.down = True
    clock.advance(5)
    with pytest.raises(AuthError) as caught:
        await strict.authenticate(secret)
    assert caught.value.status == 503
    assert (await lenient.authenticate(secret)).subject == token_id
    clock.advance(60)
    with pytest.raises(AuthError):
        await lenient.authenticate(secret)


async def test_last_used_is_written_at_most_once_a_minute_per_token_in_one_statement() -> None:
    clock = Clock()
    store, secret, token_id = await _store_with_token()
    other_store_token = generate_api_token()
    await store.add_token(
        token=NewTokenRecord(
            token_id=other_store_token.token_id,
            name="ci",
            role=Role.VIEWER,
            scopes=frozenset({Scope.SCORES_READ}),
            created_by="x",
            expires_at=None,
        ),
        token_hash=other_store_token.token_hash,
    )
    auth = _auth(store, clock, touch_every_s=60.0)
    for _ in range(100):
        await auth.authenticate(secret)
        clock.advance(0.5)  # 100 requests over 50 s
    await auth.authenticate(other_store_token.secret)
    assert await auth.flush_last_used() == 2
    assert store.touches == [{token_id: NOW, other_store_token.token_id: NOW + timedelta(seconds=50)}]
    assert await auth.flush_last_used() == 0
    clock.advance(10)  # 60 s after the first use
    await auth.authenticate(secret)
    store.down = True
    assert await auth.flush_last_used() == 0  # kept for the next flush
    store.down = False
    assert await auth.flush_last_used() == 1
    assert store.touches[-1] == {token_id: NOW + timedelta(seconds=60)}


async def test_the_bootstrap_key_only_manages_people_and_tokens() -> None:
    store, _, _ = await _store_with_token()
    principal = await _auth(store, Clock()).authenticate(BOOTSTRAP)
    assert principal.subject == "bootstrap" and principal.scopes == {Scope.USERS_ADMIN, Scope.TOKENS_ADMIN}
    with pytest.raises(AuthError):
        await _auth(store, Clock(), bootstrap_key=None).authenticate(BOOTSTRAP)


# ---- console access tokens ------------------------------------------------------------------------------
ISS, AUD = "csat-console", "csat-api"


def _csm() -> Principal:
    return Principal(
        subject="u_0123456789abcdef",
        kind=PrincipalKind.PERSON,
        role=Role.CSM,
        scopes=ROLE_SCOPES[Role.CSM],
        segments=parse_grants(["store:paris-1"]),
        accounts=frozenset({"acc-1"}),
        owner_email="ana@example.com",
    )


def _pair(key: SigningKey, clock: Clock, **verifier: object) -> tuple[AccessTokenIssuer, AccessTokenVerifier]:
    issuer = AccessTokenIssuer(key=key, issuer=ISS, audience=AUD, ttl_s=300, clock=lambda: clock.wall)
    ring = verifier.pop("ring", KeyRing.of([key]))
    return issuer, AccessTokenVerifier(
        keys=ring,  # type: ignore[arg-type] # test helper
        issuer=str(verifier.pop("issuer", ISS)),
        audience=str(verifier.pop("audience", AUD)),
        clock=lambda: clock.wall,
    )


def test_an_access_token_round_trips_the_principal() -> None:
    clock = Clock()
    clock.wall = datetime.now(UTC)
    issuer, verifier = _pair(SigningKey.generate(), clock)
    issued = issuer.mint(_csm())
    assert issued.expires_at - clock.wall.replace(microsecond=0) == timedelta(seconds=300)
    assert verifier.verify(issued.token) == _csm()
    header = jwt.get_unverified_header(issued.token)
    assert (header["alg"], header["typ"], header["kid"]) == ("EdDSA", "at+jwt", issuer.key.kid)


@pytest.mark.parametrize(
    ("advance_s", "valid"),
    [(0, True), (299, True), (329, True), (330, False), (-31, False)],  # 30 s leeway either side
)
def test_access_token_lifetime_with_leeway(advance_s: int, valid: bool) -> None:
    clock = Clock()
    clock.wall = datetime.now(UTC)
    issuer, verifier = _pair(SigningKey.generate(), clock)
    token = issuer.mint(_csm()).token
    clock.advance(advance_s)
    if valid:
        assert verifier.verify(token).subject == "u_0123456789abcdef"
    else:
        with pytest.raises(InvalidAccessToken):
            verifier.verify(token)


def _forge(header: dict[str, object], claims: dict[str, object], signature: bytes = b"") -> str:
    def part(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part(header)}.{part(claims)}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def test_forged_and_foreign_tokens_are_refused() -> None:
    clock = Clock()
    clock.wall = datetime.now(UTC)
    key, stranger = SigningKey.generate(), SigningKey.generate()
    issuer, verifier = _pair(key, clock)
    good = issuer.mint(_csm()).token
    claims = jwt.decode(good, options={"verify_signature": False})
    cases = {
        "alg none": _forge({"alg": "none", "typ": "at+jwt", "kid": key.kid}, claims),
        "HS256 keyed with the public key": _hs256(
            {"alg": "HS256", "kid": key.kid, "typ": "at+jwt"}, claims, key.public_jwk()["x"].encode()
        ),
        "another key, same kid": jwt.encode(
            claims, stranger.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": "at+jwt"}
        ),
        "unknown kid": AccessTokenIssuer(key=stranger, issuer=ISS, audience=AUD).mint(_csm()).token,
        "an ID token type": jwt.encode(
            claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": "JWT"}
        ),
        "other audience": AccessTokenIssuer(key=key, issuer=ISS, audience="other").mint(_csm()).token,
        "other issuer": AccessTokenIssuer(key=key, issuer="evil", audience=AUD).mint(_csm()).token,
        "one day long": AccessTokenIssuer(key=key, issuer=ISS, audience=AUD, ttl_s=86400).mint(_csm()).token,
        "tampered role": good.split(".")[0]
        + "."
        + _forge({}, {**claims, "role": "admin"}).split(".")[1]
        + "."
        + good.split(".")[2],
        "not a JWT": "eyJ.x.y",
    }
    assert [name for name, token in cases.items() if _accepted(verifier, token)] == []
    assert _accepted(verifier, good)


def _accepted(verifier: AccessTokenVerifier, token: str) -> bool:
    try:
        verifier.verify(token)
    except InvalidAccessToken:
        return False
    return True


def _hs256(header: dict[str, object], claims: dict[str, object], secret: bytes) -> str:
    """The algorithm-confusion attack: an HMAC keyed with the public key, which PyJWT will not make."""
    unsigned = _forge(header, claims).rsplit(".", 1)[0]
    mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def test_rotation_accepts_every_published_key_and_drops_a_retired_one() -> None:
    clock = Clock()
    clock.wall = datetime.now(UTC)
    old, new = SigningKey.generate(), SigningKey.generate()
    old_token = _pair(old, clock)[0].mint(_csm()).token
    new_token = _pair(new, clock)[0].mint(_csm()).token
    published = KeyRing.from_jwks(json.dumps({"keys": [old.public_jwk(), new.public_jwk()]}))
    _, both = _pair(new, clock, ring=published)
    assert both.verify(old_token) == both.verify(new_token) == _csm()
    _, retired = _pair(new, clock, ring=KeyRing.from_jwks({"keys": [new.public_jwk()]}))
    with pytest.raises(InvalidAccessToken, match="kid"):
        retired.verify(old_token)


def test_a_token_claiming_more_than_its_role_gets_the_role() -> None:
    clock = Clock()
    clock.wall = datetime.now(UTC)
    key = SigningKey.generate()
    _, verifier = _pair(key, clock)
    now = int(clock.wall.timestamp())
    claims = {
        "iss": ISS,
        "aud": AUD,
        "sub": "u_1",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "j",
        "role": "viewer",
        "scope": "scores:read gdpr:admin future:scope",
        "acc": [],
    }
    token = jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": "at+jwt"})
    principal = verifier.verify(token)
    assert principal.scopes == {Scope.SCORES_READ} and principal.segments is None


def test_keys_serialise_and_public_sets_refuse_private_keys() -> None:
    key = SigningKey.generate()
    again = SigningKey.from_jwk(key.private_jwk())
    assert again.kid == key.kid and again.public_jwk() == key.public_jwk()
    assert KeyRing.of([key]).to_jwks() == {"keys": [key.public_jwk()]}
    assert "d" not in key.public_jwk()
    with pytest.raises(InvalidKey, match="private"):
        KeyRing.from_jwks({"keys": [json.loads(key.private_jwk())]})
    with pytest.raises(InvalidKey):
        KeyRing.from_jwks({"keys": [{k: v for k, v in key.public_jwk().items() if k != "kid"}]})
    with pytest.raises(InvalidKey):
        KeyRing.from_jwks("[]")
    with pytest.raises(InvalidKey):
        SigningKey.from_jwk(json.dumps(key.public_jwk()))
    with pytest.raises(ValueError, match="people"):
        AccessTokenIssuer(key=key, issuer=ISS, audience=AUD).mint(
            Principal(subject="t", kind=PrincipalKind.TOKEN, role=Role.ADMIN, scopes=frozenset())
        )


async def test_the_authenticator_accepts_access_tokens_only_with_keys() -> None:
    clock = Clock()
    clock.wall = datetime.now(UTC)
    issuer, verifier = _pair(SigningKey.generate(), clock)
    token = issuer.mint(_csm()).token
    store = MemoryIdentityStore()
    assert (await _auth(store, clock, access=verifier).authenticate(token)) == _csm()
    with pytest.raises(AuthError, match="no access tokens"):
        await _auth(store, clock).authenticate(token)


# ---- the FastAPI dependency -------------------------------------------------------------------------------
async def _app() -> tuple[TestClient, str, Clock, MemoryIdentityStore]:
    clock = Clock()
    store, secret, _ = await _store_with_token(scopes={Scope.SCORES_READ})
    auth = _auth(store, clock)
    app = FastAPI()
    install_common(app, service="t", checks={})

    # Dependencies built in a closure go in defaults: string annotations (PEP 563) cannot see locals.
    scores_reader = Depends(auth.require(Scope.SCORES_READ))
    rules_reader = Depends(auth.require(Scope.RULES_READ, Scope.SCORES_READ))

    @app.get("/v1/scores")
    async def scores(principal: Principal = scores_reader) -> dict[str, str]:
        return {"caller": principal.log_name}

    @app.get("/v1/rules")
    async def rules(principal: Principal = rules_reader) -> dict[str, str]:
        return {"caller": principal.log_name}

    return TestClient(app), secret, clock, store


@pytest.mark.parametrize(
    ("headers", "status", "challenge"),
    [
        ({}, 401, 'Bearer realm="csat"'),
        ({"Authorization": "Bearer "}, 401, 'Bearer realm="csat"'),
        ({"X-API-Key": ""}, 401, 'Bearer realm="csat"'),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, 'Bearer realm="csat"'),
        ({"Authorization": "Bearer nope"}, 401, 'Bearer realm="csat", error="invalid_token"'),
    ],
)
async def test_require_answers_401_problems(headers: dict[str, str], status: int, challenge: str) -> None:
    client, _, _, _ = await _app()
    answer = client.get("/v1/scores", headers=headers)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["www-authenticate"] == challenge
    body = answer.json()
    assert body["status"] == status and body["title"] == "Unauthorized" and "caller" not in body


async def test_require_answers_403_naming_the_scope_and_passes_the_principal() -> None:
    client, secret, _, _ = await _app()
    ok = client.get("/v1/scores", headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200 and ok.json()["caller"].startswith("token:")
    assert client.get("/v1/scores", headers={"X-API-Key": secret}).status_code == 200
    forbidden = client.get("/v1/rules", headers={"Authorization": f"Bearer {secret}"})
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"].startswith("application/problem+json")
    assert forbidden.json()["detail"] == "this credential lacks the scope rules:read"
    client_down, secret_down, _, store_down = await _app()
    store_down.down = True
    unavailable = client_down.get("/v1/scores", headers={"Authorization": f"Bearer {secret_down}"})
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "5"


async def test_require_shows_in_openapi_as_security_schemes() -> None:
    client, _, _, _ = await _app()
    schema = client.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    assert schema["paths"]["/v1/scores"]["get"]["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]


# ---- the services' wiring: the bootstrap key's scopes by environment -------------------------------
@pytest.mark.parametrize(
    ("environment", "admin_everywhere"), [("dev", True), ("test", True), ("prod", False)]
)
async def test_the_bootstrap_key_is_a_full_admin_outside_prod_and_bootstrap_only_in_prod(
    environment: str, admin_everywhere: bool
) -> None:
    from pydantic import SecretStr

    from shared.identity.config import IdentitySettings
    from shared.identity.scopes import BOOTSTRAP_SCOPES
    from shared.identity.wiring import service_authenticator

    auth = service_authenticator(
        service="scorer",
        identity=IdentitySettings(bootstrap_admin_key=SecretStr(BOOTSTRAP)),
        environment=environment,
        tokens=None,
    )
    principal = await auth.authenticate(BOOTSTRAP)
    assert principal.subject == "bootstrap" and principal.role is Role.ADMIN
    expected = ROLE_SCOPES[Role.ADMIN] if admin_everywhere else BOOTSTRAP_SCOPES
    assert principal.scopes == expected
    assert principal.can(Scope.SCORES_READ) is admin_everywhere
    with pytest.raises(AuthError):
        await auth.authenticate("")  # an empty credential never equals an empty or unset key
    blank = service_authenticator(
        service="scorer",
        identity=IdentitySettings(bootstrap_admin_key=SecretStr(" ")),
        environment=environment,
        tokens=None,
    )
    with pytest.raises(AuthError):
        await blank.authenticate(" ")
    # no key configured: dev and test fall back to the public dev key, prod to none at all
    unset = service_authenticator(
        service="scorer", identity=IdentitySettings(), environment=environment, tokens=None
    )
    if environment == "prod":
        with pytest.raises(AuthError):
            await unset.authenticate("dev-admin-key")
    else:
        assert (await unset.authenticate("dev-admin-key")).subject == "bootstrap"
