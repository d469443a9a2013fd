"""What is not the events API: the dashboard page and its files (with their strict headers),
health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from eventsapi.errors import RETRY_AFTER, StoreUnavailable
from eventsapi.handlers import ALERT_RULES, DOCUMENT, METRICS, RETENTION, SETTINGS, STORE, call_store, json_answer
from eventsapi.problems import problem_response

DASHBOARD = Path(__file__).parent / "dashboard"
ASSETS = {name: "text/javascript" for name in ("app.js", "chart.js", "time.js")} | {"style.css": "text/css"}
# The page runs only its own scripts and styles and talks only to this origin.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(DASHBOARD / "index.html", headers={**PAGE_HEADERS, "Content-Type": "text/html"})


async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ASSETS:  # only the dashboard's own files, never a path
        raise web.HTTPNotFound()
    return web.FileResponse(DASHBOARD / name, headers={**PAGE_HEADERS, "Content-Type": ASSETS[name]})


async def healthz(request: web.Request) -> web.Response:
    return json_answer({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await call_store(request, request.app[STORE].ping())
    except StoreUnavailable:
        return problem_response(503, "store unreachable", headers={"Retry-After": RETRY_AFTER})
    retention = request.app[RETENTION]
    await retention.read(request.app[STORE], request.app[SETTINGS])
    answer: dict[str, object] = {"status": "ready", "retention_days": retention.days if retention.known else "unknown"}
    rules = request.app[ALERT_RULES]
    if rules.path is not None:  # alerts are configured: say how their rules file stands
        answer["alerts"] = {"rules": len(rules.rules), "error": rules.error}
    return json_answer(answer)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return json_answer(request.app[DOCUMENT])
