"""Prometheus metrics (one registry per app) and the JSON access log."""

from __future__ import annotations

import json
import logging
import os
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.multiprocess import MultiProcessCollector

from eventsapi.peers import from_peer


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg: CollectorRegistry | None = self.registry  # where the metrics below register
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Workers of `serve --workers N`: each writes its values to the shared directory and
            # /metrics adds up every worker's (workers.py).
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
            reg = None
        else:
            # process_resident_memory_bytes and friends: what operators (and `eventsapi bench`) watch.
            ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "eventsapi_requests_total",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "eventsapi_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=reg,
        )
        self.ingested = Counter("eventsapi_events_ingested_total", "Events accepted by ingest", registry=reg)
        self.rejected = Counter("eventsapi_events_rejected_total", "Events rejected by ingest", registry=reg)
        self.rate_limited = Counter(
            "eventsapi_rate_limited_total",
            "Requests refused by EVENTSAPI_RATE_LIMITS",
            ["class"],
            registry=reg,
        )
        self.alerts_fired = Counter("eventsapi_alerts_fired_total", "Alert firings this process recorded", registry=reg)
        self.alerts_delivered = Counter(
            "eventsapi_alerts_delivered_total", "Alert notifications a webhook accepted (2xx)", registry=reg
        )
        self.alerts_failed = Counter(
            "eventsapi_alerts_failed_total", "Webhook attempts that failed (non-2xx or no answer)", registry=reg
        )
        self.alerts_retrying = Gauge(
            "eventsapi_alerts_retrying", "Firings not yet delivered", registry=reg, multiprocess_mode="max"
        )
        self.store_errors = Counter(
            "eventsapi_store_errors_total",
            "Store operations that failed or timed out",
            ["kind"],
            registry=reg,
        )


def route_name(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return "unmatched"
    return str(resource.canonical)


class JSONAccessLogger(AbstractAccessLogger):
    """One JSON line per request. The path is logged without its query string, and no
    header or body is logged, so tokens and payloads never reach the log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        if from_peer(request):  # logged by the worker that passed it on (peers.py)
            return
        self.logger.info(
            json.dumps(
                {
                    "ts": round(time.time(), 3),
                    "remote": request.remote,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "bytes": response.body_length,
                    "duration_ms": round(time_ * 1000, 2),
                }
            )
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
