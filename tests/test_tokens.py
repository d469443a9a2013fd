"""Token attacks against every key configuration: RS256/ES256 public keys, JWKS with rotation,
audience and issuer, key confusion, tampering."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from eventsapi.app import create_app
from eventsapi.config import Settings
from support import ALL_SCOPES

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(**kw: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "t", "buckets": ["b1"], "scope": ALL_SCOPES, "iat": now, "exp": now + 600}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hs256_with_key(payload: dict[str, Any], key: bytes) -> str:
    """An HS256 token whose HMAC key is `key` (pyjwt refuses to build one from a PEM key)."""
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(payload).encode())
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(sig)


async def client_for(settings: Settings, tmp_path: Path) -> TestClient[Any, Any]:
    from eventsapi.stores.sqlite import SQLiteStore

    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(settings, SQLiteStore(tmp_path / f"t{time.monotonic_ns()}.db")))
    )
    await client.start_server()
    return client


async def status(client: TestClient[Any, Any], token: str, bucket: str = "b1") -> int:
    resp = await client.post(
        f"/api/bucket/{bucket}/data/events", json={"event_name": "e"}, headers={"Authorization": f"Bearer {token}"}
    )
    if resp.status == 401:
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
        assert resp.content_type == "application/problem+json"
    return resp.status


@pytest.fixture
async def rs_client(settings: Settings, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    client = await client_for(replace(settings, jwt_secret=None, jwt_public_key=pem(RSA_KEY)), tmp_path)
    yield client
    await client.close()


async def test_rs256_accepts_its_key_and_rejects_confusion(rs_client: TestClient[Any, Any]) -> None:
    assert await status(rs_client, jwt.encode(claims(), RSA_KEY, algorithm="RS256")) == 200
    # Key confusion: HS256 signed with the server's own public key as the HMAC secret.
    assert await status(rs_client, hs256_with_key(claims(), pem(RSA_KEY).encode())) == 401
    # Another RSA key, an EC key, alg none, and the right key with a tampered payload.
    assert await status(rs_client, jwt.encode(claims(), RSA_KEY_2, algorithm="RS256")) == 401
    assert await status(rs_client, jwt.encode(claims(), EC_KEY, algorithm="ES256")) == 401
    none = b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(json.dumps(claims()).encode()) + "."
    assert await status(rs_client, none) == 401
    good = jwt.encode(claims(buckets=["other"]), RSA_KEY, algorithm="RS256")
    head, _, sig = good.split(".")
    tampered = head + "." + b64(json.dumps(claims(buckets=["*"])).encode()) + "." + sig
    assert await status(rs_client, tampered) == 401
    assert await status(rs_client, good) == 403
    # PS256 is RSA too, but not the configured algorithm.
    assert await status(rs_client, jwt.encode(claims(), RSA_KEY, algorithm="PS256")) == 401


async def test_rs256_time_claims(rs_client: TestClient[Any, Any]) -> None:
    now = int(time.time())
    for bad in (claims(exp=now - 3600), claims(exp=None), claims(nbf=now + 3600), claims(iat="yesterday")):
        assert await status(rs_client, jwt.encode(bad, RSA_KEY, algorithm="RS256")) == 401


async def test_token_lifetime_is_capped(rs_client: TestClient[Any, Any]) -> None:
    """A token may not claim to live longer than EVENTSAPI_JWT_MAX_LIFETIME (30 days)."""
    now = int(time.time())
    day = 86_400
    for bad in (
        claims(exp=1e300),
        claims(exp=now + 31 * day),
        claims(iat=None, exp=now + 31 * day),
        claims(iat=now - 20 * day, exp=now + 11 * day),
    ):
        assert await status(rs_client, jwt.encode(bad, RSA_KEY, algorithm="RS256")) == 401
    assert await status(rs_client, jwt.encode(claims(exp=now + 29 * day), RSA_KEY, algorithm="RS256")) == 200


async def test_es256(settings: Settings, tmp_path: Path) -> None:
    client = await client_for(replace(settings, jwt_secret=None, jwt_public_key=pem(EC_KEY)), tmp_path)
    try:
        assert await status(client, jwt.encode(claims(), EC_KEY, algorithm="ES256")) == 200
        assert await status(client, jwt.encode(claims(), RSA_KEY, algorithm="RS256")) == 401
        assert await status(client, hs256_with_key(claims(), pem(EC_KEY).encode())) == 401
    finally:
        await client.close()


async def test_audience_and_issuer(settings: Settings, tmp_path: Path) -> None:
    s = replace(settings, jwt_audience="eventsapi", jwt_issuer="https://issuer.example")
    client = await client_for(s, tmp_path)
    try:
        secret = s.jwt_secret
        assert secret is not None
        ok = claims(aud="eventsapi", iss="https://issuer.example")
        assert await status(client, jwt.encode(ok, secret, algorithm="HS256")) == 200
        for bad in (
            claims(iss="https://issuer.example"),
            claims(aud="someone-else", iss="https://issuer.example"),
            claims(aud="eventsapi"),
            claims(aud="eventsapi", iss="https://evil.example"),
        ):
            assert await status(client, jwt.encode(bad, secret, algorithm="HS256")) == 401, bad
    finally:
        await client.close()


def jwk(key: Any, kid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**data, "kid": kid, "use": "sig", "alg": "RS256"}


async def test_jwks_with_rotation_and_unknown_kid(settings: Settings, tmp_path: Path) -> None:
    keys = {"keys": [jwk(RSA_KEY, "k1")]}
    fetches = 0

    async def serve_jwks(request: web.Request) -> web.Response:
        nonlocal fetches
        fetches += 1
        return web.json_response(keys)

    jwks_app = web.Application()
    jwks_app.router.add_get("/jwks.json", serve_jwks)
    jwks = TestServer(jwks_app)
    await jwks.start_server()
    url = str(jwks.make_url("/jwks.json"))
    client = await client_for(replace(settings, jwt_secret=None, jwks_url=url, jwks_cooldown=0), tmp_path)
    try:
        k1 = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
        assert await status(client, k1) == 200
        no_kid = jwt.encode(claims(), RSA_KEY, algorithm="RS256")
        assert await status(client, no_kid) == 401
        # Rotation: the issuer publishes k2; tokens signed with it are accepted without restart
        # (an unknown kid makes the client fetch the key set again).
        keys["keys"] = [jwk(RSA_KEY_2, "k2")]
        rotated = jwt.encode(claims(sub="after"), RSA_KEY_2, algorithm="RS256", headers={"kid": "k2"})
        assert await status(client, rotated) == 200
        # A kid nobody published, and a token claiming k2 but signed with the old key.
        unknown = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k3"})
        assert await status(client, unknown) == 401
        forged = jwt.encode(claims(sub="forged"), RSA_KEY, algorithm="RS256", headers={"kid": "k2"})
        assert await status(client, forged) == 401
        hs = hs256_with_key(claims(), pem(RSA_KEY_2).encode())
        assert await status(client, hs) == 401
        assert fetches >= 2
    finally:
        await client.close()
        await jwks.close()


async def test_jwks_endpoint_down_is_401_not_500(settings: Settings, tmp_path: Path) -> None:
    from support.influxd import free_port

    client = await client_for(
        replace(settings, jwt_secret=None, jwks_url=f"http://127.0.0.1:{free_port()}/jwks.json"), tmp_path
    )
    try:
        token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
        assert await status(client, token) == 401
    finally:
        await client.close()
