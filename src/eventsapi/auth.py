"""Bearer credentials — signed tokens (pyjwt) and ingest keys (keys.py) — and bucket/scope
authorisation (docs/api.md §3). A Principal knows when its credential ends, so that live feeds
can end with it (`until_invalid`)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from eventsapi import keys
from eventsapi.config import Settings
from eventsapi.errors import StoreUnavailable
from eventsapi.problems import Problem

SCOPES = ("events:read", "events:write", "events:delete")
CACHE_SIZE = 4096
CACHE_SECONDS = 60.0
_CHALLENGE = 'Bearer realm="eventsapi", error="invalid_token"'


def unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": _CHALLENGE})


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    buckets: frozenset[str]
    scopes: frozenset[str]
    expires: float | None = None  # a token's `exp` (epoch seconds); keys do not expire
    key_id: str | None = None  # set when the credential is an ingest key

    def require(self, bucket: str, scope: str) -> None:
        self.require_scope(scope)
        if not self.grants(bucket):
            raise Problem(403, "token does not grant access to this bucket")

    def grants(self, bucket: str) -> bool:
        return "*" in self.buckets or bucket in self.buckets

    def require_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Problem(
                403,
                f"token lacks scope {scope}",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )


class Authenticator:
    """Verifies tokens with exactly one configured key and its algorithm family."""

    def __init__(self, settings: Settings, keyring: keys.Keyring | None = None) -> None:
        self.keyring = keyring
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway
        self._max_lifetime = settings.jwt_max_lifetime
        self._jwks: jwt.PyJWKClient | None = None
        # Dashboards send the same token with every request; verifying it costs ~100 µs, so
        # verified tokens are remembered until they expire, for at most CACHE_SECONDS.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._key: Any
        if settings.jwt_secret:
            self._key, self._algorithms = settings.jwt_secret, ["HS256"]
        elif settings.jwt_public_key:
            key = load_pem_public_key(settings.jwt_public_key.encode())
            if isinstance(key, rsa.RSAPublicKey):
                self._algorithms = ["RS256"]
            elif isinstance(key, ec.EllipticCurvePublicKey):
                self._algorithms = ["ES256"]
            else:
                raise ValueError("EVENTSAPI_JWT_PUBLIC_KEY must be an RSA or EC (P-256) key")
            self._key = key
        elif settings.jwks_url:
            # An unknown kid refetches the key set (key rotation), at most once per cooldown.
            self._jwks = jwt.PyJWKClient(
                settings.jwks_url, cache_keys=True, lifespan=300, timeout=5, cooldown_duration=settings.jwks_cooldown
            )
            self._key, self._algorithms = None, ["RS256", "ES256"]
        else:
            raise ValueError("no JWT key configured")

    async def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise unauthorized("missing Authorization: Bearer token")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("Authorization must be 'Bearer <token>'")
        if token.startswith(keys.PREFIX):
            return await self._ingest_key(token)
        hit = self._verified.get(token)
        if hit is not None:
            if time.time() < hit[1]:
                self._verified.move_to_end(token)
                return hit[0]
            del self._verified[token]
        key = self._key
        if self._jwks is not None:
            # PyJWKClient fetches with blocking urllib: keep it off the event loop.
            try:
                signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            except jwt.PyJWKClientError as exc:
                raise unauthorized(f"no usable signing key: {exc}") from None
            except jwt.InvalidTokenError:
                raise unauthorized("malformed token") from None
            key = signing_key.key
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("token not yet valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"token lacks the {exc.claim} claim") from None
        except jwt.InvalidTokenError as exc:
            raise unauthorized(f"invalid token: {type(exc).__name__}") from None
        # pyjwt takes "9999999999" for a time; RFC 7519 says NumericDate, a JSON number.
        for claim in ("exp", "nbf", "iat"):
            if claim in claims and (isinstance(claims[claim], bool) or not isinstance(claims[claim], int | float)):
                raise unauthorized(f"token claim {claim} must be a number (seconds since the epoch)")
        # A token that claims to live for ever would outlive every key rotation and revocation.
        issued = claims.get("iat", time.time())
        if float(claims["exp"]) - float(issued) > self._max_lifetime + self._leeway:
            raise unauthorized(f"token lifetime exceeds {self._max_lifetime:g} s (EVENTSAPI_JWT_MAX_LIFETIME)")
        principal = _principal(claims, float(claims["exp"]))
        until = min(float(claims["exp"]) + self._leeway, time.time() + CACHE_SECONDS)
        self._verified[token] = (principal, until)
        if len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    async def _ingest_key(self, key: str) -> Principal:
        key_id = keys.key_id_of(key)
        if key_id is None:
            raise unauthorized("malformed key")
        record = await self._lookup(key_id)
        if record is None or not keys.matches(record, key):
            raise unauthorized("unknown key")
        if record.revoked is not None:
            raise unauthorized("key revoked")
        assert self.keyring is not None
        self.keyring.touch(key_id)
        return Principal(f"key:{key_id}", frozenset(record.buckets), frozenset(record.scope.split()), None, key_id)

    async def _lookup(self, key_id: str) -> keys.KeyRecord | None:
        if self.keyring is None:
            raise unauthorized("ingest keys are not available here")
        return await self.keyring.lookup(key_id)

    async def until_invalid(self, principal: Principal) -> str:
        """Return, with the reason, once the principal's credential no longer holds: at a
        token's `exp`, or within keys.CACHE_S of a key's revocation. A store that cannot be
        asked meanwhile keeps what it granted (an outage is not a revocation)."""
        while True:
            now = time.time()
            if principal.expires is not None:
                if now >= principal.expires:
                    return "token expired"
                await asyncio.sleep(principal.expires - now)
                continue
            if principal.key_id is None:
                await asyncio.Event().wait()  # nothing ends it
            assert principal.key_id is not None
            await asyncio.sleep(keys.CACHE_S)
            try:
                record = await self._lookup(principal.key_id)
            except StoreUnavailable:
                continue
            if record is None or record.revoked is not None:
                return "key revoked"


def _principal(claims: dict[str, Any], expires: float) -> Principal:
    sub, buckets, scope = claims.get("sub"), claims.get("buckets", []), claims.get("scope", "")
    if not isinstance(sub, str) or not sub:
        raise unauthorized("token sub must be a non-empty string")
    if not isinstance(buckets, list) or not all(isinstance(b, str) for b in buckets):
        raise unauthorized("token buckets must be a list of bucket ids")
    if not isinstance(scope, str):
        raise unauthorized("token scope must be a space-separated string")
    return Principal(sub, frozenset(buckets), frozenset(scope.split()), expires)


def issue_token(secret: str, sub: str, buckets: list[str], scope: str, ttl: int, now: int) -> str:
    claims = {"sub": sub, "buckets": buckets, "scope": scope, "iat": now, "nbf": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")
