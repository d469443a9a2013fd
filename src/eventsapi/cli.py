"""The `eventsapi` command: serve, settings, token, keys, alerts, export, import, migrate, bench."""

from __future__ import annotations

import argparse
import gc
import logging
import socket
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from eventsapi.config import SETTINGS, ConfigError, Setting, ensure_secret, load_settings, settings_table
from eventsapi.limits import REQUEST_LINE_BYTES
from eventsapi.stores import open_store

if TYPE_CHECKING:
    from eventsapi.keys import KeyRecord


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from eventsapi.app import create_app
    from eventsapi.observability import JSONAccessLogger

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    settings = load_settings(**{st.field: getattr(args, st.field) for st in SETTINGS if st.flag})
    settings, source = ensure_secret(settings)
    if not settings.store_url:  # the default store lives in the data dir, which is made here
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {settings.data_dir}: {exc.strerror} (EVENTSAPI_DATA_DIR)") from None
    store_url = settings.resolved_store_url()
    try:
        store = open_store(store_url, settings)  # builds only: a malformed URL is a configuration error
    except ValueError as exc:
        raise ConfigError(f"EVENTSAPI_STORE / --store: {exc}") from None
    problem = store.start_problem()
    if problem is not None:
        raise ConfigError(f"EVENTSAPI_STORE / --store: {problem}")
    # Bind before saying anything: a port in use or an address not on this host is one line.
    # With --workers each worker binds (SO_REUSEPORT); the parent tries first.
    sock = _bind(settings.host, settings.port, settings.reuse_port or settings.workers > 1)
    log = logging.getLogger("eventsapi")
    if source == "generated":
        log.info(
            "generated a JWT secret in %s (mode 0600); `eventsapi token` uses it too",
            settings.data_dir / "jwt-secret",
        )
    elif source == "file":
        log.info("using the JWT secret in %s", settings.data_dir / "jwt-secret")
    if settings.workers > 1:
        from eventsapi.workers import run_workers

        sock.close()
        log.info("starting %d workers on http://%s:%d", settings.workers, settings.host, settings.port)
        serve_args = [a for a in ("--host", settings.host, "--port", str(settings.port))]
        if args.store_url:
            serve_args += ["--store", args.store_url]
        return run_workers(settings.workers, serve_args)
    log.info(
        "eventsapi listening on http://%s:%d, store %s", settings.host, settings.port, settings.store_description()
    )
    sockets = [sock]
    if settings.worker_slot is not None:  # a worker of --workers: its socket for the others (peers.py)
        from eventsapi.peers import bind_socket

        try:
            sockets.append(bind_socket(settings.worker_slot))
        except OSError as exc:  # the others then write this worker's buckets themselves: slower, as correct
            log.warning("worker socket in %s: %s; its buckets are written by whichever worker gets them",
                        settings.worker_slot.directory, exc.strerror or exc)  # fmt: skip
    app = create_app(settings)
    # Ingest allocates thousands of short-lived objects per request; the default collector
    # would scan them ~10 times per 5,000-event batch. Objects from start-up are frozen out of
    # collection, and the young generation is collected less often.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    web.run_app(
        app,
        sock=sockets,
        access_log_class=JSONAccessLogger,
        access_log=logging.getLogger("eventsapi.access") if settings.access_log else None,
        shutdown_timeout=settings.shutdown_timeout,
        # Also closes a connection that sends no complete request head within this time.
        keepalive_timeout=settings.keepalive_timeout,
        # A request line past this is refused by aiohttp in plain text, before any route could
        # answer problem+json (docs/api.md §4); 8 KiB by default, which long filters can reach.
        max_line_size=REQUEST_LINE_BYTES,
        print=None,
    )
    return 0


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    """The listening socket, or a ConfigError that says in one line why there is none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(1024)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port}: {why} (EVENTSAPI_HOST / EVENTSAPI_PORT)") from None
    sock.setblocking(False)
    return sock


def _setting_arg(setting: Setting, value: str) -> object:
    """A command-line value read by the setting's own parser (the same rules as its variable)."""
    try:
        return setting.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected {exc}") from None


def _settings(args: argparse.Namespace) -> int:
    print(settings_table(), end="")
    return 0


def _token(args: argparse.Namespace) -> int:
    from eventsapi.auth import issue_token

    settings, _ = ensure_secret(load_settings())
    if not settings.jwt_secret:
        print(
            "eventsapi token signs with HS256: set EVENTSAPI_JWT_SECRET or unset the public key",
            file=sys.stderr,
        )
        return 2
    problem = _check_grant(args.bucket, args.scope)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    scopes = args.scope.split()
    if not 0 < args.ttl <= settings.jwt_max_lifetime:
        print(
            f"--ttl must be > 0 and at most {int(settings.jwt_max_lifetime)} seconds (EVENTSAPI_JWT_MAX_LIFETIME)",
            file=sys.stderr,
        )
        return 2
    print(issue_token(settings.jwt_secret, args.sub, args.bucket, " ".join(scopes), args.ttl, int(time.time())))
    return 0


def _check_grant(buckets: list[str], scope: str) -> str | None:
    """What is wrong with a grant of `--bucket`s and `--scope`, or None."""
    from eventsapi.auth import SCOPES
    from eventsapi.validation import BUCKET_RE

    scopes = scope.split()
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        return f"unknown scope(s) {bad}; choose from {' '.join(SCOPES)}"
    for b in buckets:
        if b != "*" and not BUCKET_RE.fullmatch(b):
            return f"invalid bucket id {b!r}"
    return None


def _keys(args: argparse.Namespace) -> int:
    """`eventsapi keys create|list|revoke`: straight on the store, no service needed."""
    import asyncio

    from eventsapi import keys
    from eventsapi.errors import StoreUnavailable
    from eventsapi.limits import MAX_NAME
    from eventsapi.validation import valid_name

    settings = load_settings(store_url=args.store)
    if args.action == "create":
        problem = _check_grant(args.bucket, args.scope)
        if problem is None and not valid_name(args.name, MAX_NAME):
            problem = f"--name must be 1-{MAX_NAME} characters with no control characters"
        if problem:
            print(f"eventsapi keys create: {problem}", file=sys.stderr)
            return 2
    try:
        store = open_store(settings.resolved_store_url(), settings)
    except ValueError as exc:
        raise ConfigError(f"EVENTSAPI_STORE / --store: {exc}") from None

    async def run() -> int:
        await store.open()
        try:
            now = int(time.time() * 1000)
            if args.action == "create":
                key, record = keys.new_key(args.name, args.bucket, " ".join(args.scope.split()), now)
                await store.key_create(record)
                print(f"created key {record.key_id} ({record.name}); it is shown once, below:", file=sys.stderr)
                print(key)
            elif args.action == "revoke":
                if not await store.key_revoke(args.id, now):
                    print(f"eventsapi keys revoke: no key {args.id!r} (see `eventsapi keys list`)", file=sys.stderr)
                    return 1
                print(f"revoked key {args.id}; every service refuses it within {2 * keys.CACHE_S:g} s", file=sys.stderr)
            else:
                print(_keys_table(await store.keys()), end="")
            return 0
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreUnavailable as exc:
        print(f"eventsapi keys: the store is unavailable: {exc}", file=sys.stderr)
        return 1


def _keys_table(records: Sequence[KeyRecord]) -> str:
    from datetime import UTC, datetime

    def when(ms: int | None) -> str:
        return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    rows = [("id", "name", "buckets", "scope", "created", "last used", "revoked")]
    for r in records:
        rows.append(
            (r.key_id, r.name, ",".join(r.buckets), r.scope, when(r.created), when(r.last_used), when(r.revoked))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n" for row in rows)


def _alerts(args: argparse.Namespace) -> int:
    """`eventsapi alerts test RULE`: one notification, marked as a test, to the rule's webhook."""
    import asyncio

    from eventsapi.alert_rules import RuleFile
    from eventsapi.alerts import send_test

    settings = load_settings(alert_rules=args.rules) if args.rules else load_settings()
    rules = RuleFile(settings.alert_rules, settings.alert_allow_private)
    if settings.alert_rules is None:
        raise ConfigError("EVENTSAPI_ALERT_RULES / --rules: no rules file given")
    rules.poll()
    if rules.error:
        raise ConfigError(f"EVENTSAPI_ALERT_RULES: {rules.error}")
    rule = next((r for r in rules.rules if r.name == args.rule), None)
    if rule is None:
        known = ", ".join(r.name for r in rules.rules) or "none"
        print(
            f"eventsapi alerts test: no rule {args.rule!r} in {settings.alert_rules} (rules: {known})", file=sys.stderr
        )
        return 2
    status, delivery = asyncio.run(send_test(rule, settings.alert_secret))
    if status is None:
        print(f"{rule.webhook} did not answer (delivery {delivery})", file=sys.stderr)
        return 1
    print(f"{rule.webhook} answered HTTP {status} (delivery {delivery})", file=sys.stderr)
    return 0 if 200 <= status < 300 else 1


def _bench(args: argparse.Namespace) -> int:
    from eventsapi.bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventsapi", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service. Every setting is also read from the environment:",
        epilog="\n".join(f"  {st.env}  {st.help} (default: {st.default()})" for st in SETTINGS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for st in SETTINGS:  # the settings that have a flag: the same parser, help and default
        if st.flag:
            serve.add_argument(
                st.flag,
                dest=st.field,
                default=None,
                type=partial(_setting_arg, st),
                help=f"{st.help} (default: {st.default()}; {st.env})",
            )
    serve.set_defaults(func=_serve)

    sub.add_parser("settings", help="print every setting as a Markdown table").set_defaults(func=_settings)

    token = sub.add_parser(
        "token",
        help="print a signed JWT (HS256, with the secret serve uses from this directory)",
        description="Print a signed token. For producers that run for months, prefer `eventsapi keys create`.",
    )
    token.add_argument(
        "--sub", required=True, help="who the token is for (rate limits and stream limits count per sub)"
    )
    token.add_argument("--bucket", action="append", required=True, help="bucket id it grants (repeat), or '*' for all")
    token.add_argument(
        "--scope",
        default="events:read events:write",
        help="space-separated: events:read events:write events:delete (default: events:read events:write)",
    )
    token.add_argument("--ttl", type=int, default=24 * 3600, help="seconds (default 86400)")
    token.set_defaults(func=_token)

    keys = sub.add_parser(
        "keys",
        help="create, list and revoke ingest keys (long-lived producer credentials)",
        description="Ingest keys live in the store, so every worker and replica sees them; a revoked key is "
        "refused everywhere within seconds. The key itself is printed once, by create, and never stored.",
    )
    keys_sub = keys.add_subparsers(dest="action", required=True)
    store_help = "the store, as for serve (default: EVENTSAPI_STORE, else SQLite in the data dir)"
    create = keys_sub.add_parser("create", help="make a key; it is printed once, as the last line of stdout")
    create.add_argument("--bucket", action="append", required=True, help="bucket id it grants (repeat), or '*'")
    create.add_argument("--scope", default="events:write", help="space-separated scopes (default: events:write)")
    create.add_argument("--name", required=True, help="what it is for, shown by list (e.g. the producer's host)")
    keys_sub.add_parser("list", help="every key: id, name, buckets, scope, created, last used, revoked")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id (from list)")
    revoke.add_argument("id")
    for p in (create, keys_sub.choices["list"], revoke):
        p.add_argument("--store", default=None, help=store_help)
    keys.set_defaults(func=_keys)

    alerts = sub.add_parser("alerts", help="alert rules: send a test notification")
    alerts_sub = alerts.add_subparsers(dest="action", required=True)
    test = alerts_sub.add_parser(
        "test", help="send a test notification to a rule's webhook (signed as the service signs)"
    )
    test.add_argument("rule", help="the rule's name")
    test.add_argument("--rules", type=Path, default=None, help="the rules file (default: EVENTSAPI_ALERT_RULES)")
    alerts.set_defaults(func=_alerts)

    from eventsapi.transfer_cli import add_commands

    add_commands(sub)

    from eventsapi.bench import add_bench_arguments

    bench = sub.add_parser("bench", help="load-test a deployment (and its engine directly)")
    add_bench_arguments(bench)
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"eventsapi: configuration error: {exc}", file=sys.stderr)
        return 2
