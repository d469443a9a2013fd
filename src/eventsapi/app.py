"""The aiohttp application factory: the process's state, the store's life cycle, the routes of
routes.py and CORS. Handlers live in handlers.py; what an ingest does, in ingest.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp_cors
from aiohttp import web

from eventsapi.admission import Admission
from eventsapi.alert_rules import RuleFile
from eventsapi.alerts import AlertEngine, Counters
from eventsapi.auth import Authenticator
from eventsapi.cardinality import CardinalityGuard
from eventsapi.config import Settings
from eventsapi.handlers import (
    ADMISSION,
    ALERT_RULES,
    ALERTS,
    AUTH,
    DOCUMENT,
    GUARD,
    HUB,
    INGEST,
    METRICS,
    PEERS,
    RATE,
    RETENTION,
    SETTINGS,
    STORE,
    problems_middleware,
    response_headers,
)
from eventsapi.ingest import Ingest, Retention
from eventsapi.keys import Keyring
from eventsapi.observability import Metrics
from eventsapi.openapi import openapi_document
from eventsapi.peers import Peers
from eventsapi.ratelimit import RateLimiter
from eventsapi.routes import ROUTES
from eventsapi.stores import open_store
from eventsapi.stores.base import Store, StoreUnavailable
from eventsapi.tail import TailHub

__all__ = ["HUB", "STORE", "create_app"]
log = logging.getLogger("eventsapi")


def create_app(settings: Settings, store: Store | None = None) -> web.Application:
    """Build the application. The store is opened on start-up and closed on clean-up."""
    app = web.Application(middlewares=[problems_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    s = store if store is not None else open_store(settings.resolved_store_url(), settings)
    app[STORE] = s
    keyring = Keyring(s)
    app[AUTH] = Authenticator(settings, keyring)
    app[METRICS] = Metrics()
    app[ADMISSION] = Admission(settings.heavy_budget, settings.heavy_wait)
    app[RATE] = RateLimiter(settings.rate_limits)
    app[RETENTION] = Retention()
    app[ALERT_RULES] = RuleFile(settings.alert_rules, settings.alert_allow_private)
    app.on_response_prepare.append(response_headers)

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(settings.store_timeout):
                await s.open()
        except (StoreUnavailable, TimeoutError) as exc:
            # Start anyway: /readyz says 503 and requests answer 503 until the store is back.
            log.warning("store not reachable at start-up: %s", exc)
        await app[RETENTION].read(s, settings)
        app[HUB] = TailHub(
            s, settings.max_streams, settings.stream_bytes, settings.tail_memory_bytes, settings.store_timeout
        )
        app[GUARD] = CardinalityGuard(
            s, settings.max_names_per_bucket, settings.max_apps_per_bucket, settings.max_servers_per_bucket
        )
        app[INGEST] = Ingest(s, app[GUARD], app[RETENTION], settings, app[METRICS])
        m = app[METRICS]
        counters = Counters(m.alerts_fired, m.alerts_delivered, m.alerts_failed, m.alerts_retrying)
        app[ALERTS] = AlertEngine(s, app[HUB], app[ALERT_RULES], settings.alert_secret, counters)
        if settings.worker_slot is not None and settings.worker_slot.count > 1 and s.one_writer_per_bucket:
            # The owner's ingest runs two store calls, each bounded by the store timeout.
            app[PEERS] = Peers(settings.worker_slot, 2 * settings.store_timeout + 5)
        background = [asyncio.create_task(keyring.renew_forever())]
        if settings.alert_rules is not None:
            background.append(asyncio.create_task(app[ALERTS].run()))
        yield
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await keyring.close()
        if PEERS in app:
            await app[PEERS].close()
        await s.close()

    app.cleanup_ctx.append(store_ctx)

    async def end_streams(app: web.Application) -> None:
        # On SIGTERM, before in-flight requests are waited for: live-tail streams never finish
        # by themselves, so they are ended here (their clients resume with Last-Event-ID).
        if HUB in app:
            await app[HUB].close()

    app.on_shutdown.append(end_streams)
    app[DOCUMENT] = openapi_document(settings.max_events)
    api_routes = []  # what CORS applies to
    for r in ROUTES:
        if r.method == "GET":  # answers HEAD too
            route = app.router.add_get(r.path, r.handler)
        else:
            route = app.router.add_route(r.method, r.path, r.handler)
        if r.api:
            api_routes.append(route)
    if settings.cors_origins:
        options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
            allow_credentials=False,
            expose_headers=("X-Next-Cursor", "Retry-After", "RateLimit", "RateLimit-Policy"),
            allow_headers=("Authorization", "Content-Type", "Content-Encoding", "Last-Event-ID"),
            max_age=600,
        )
        cors = aiohttp_cors.setup(app, defaults={o: options for o in settings.cors_origins})
        for route in api_routes:
            cors.add(route)
    return app
