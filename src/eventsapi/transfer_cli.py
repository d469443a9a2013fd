"""`eventsapi export`, `eventsapi import` and `eventsapi migrate`: straight on the stores, no
service needed. The work is transfer.py's; this module reads the arguments and reports."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from eventsapi.config import ConfigError, load_settings
from eventsapi.errors import StoreUnavailable
from eventsapi.stores import open_store
from eventsapi.stores.base import Store
from eventsapi.validation import check_bucket, parse_time
from eventsapi.values import ExportQuery

STORE_HELP = "the store, as for serve (default: EVENTSAPI_STORE, else SQLite in the data dir)"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser(
        "export",
        help="write a bucket's events to stdout as NDJSON, oldest first",
        description="Every matching event of a bucket as NDJSON on stdout, oldest first, each line in the "
        "ingest's shape plus its `position`; `eventsapi import` (or POST .../events/ingest) stores it again "
        "as it was. Constant memory whatever the size.",
    )
    export.add_argument("--store", default=None, help=STORE_HELP)
    export.add_argument("--bucket", required=True)
    export.add_argument("--event-name", default=None)
    export.add_argument("--app-name", default=None)
    export.add_argument("--server-name", default=None)
    export.add_argument("--start", default=None, help="inclusive: epoch ms or ISO 8601 (UTC without an offset)")
    export.add_argument("--end", default=None, help="exclusive: epoch ms or ISO 8601")
    export.set_defaults(func=_export)

    imp = sub.add_parser(
        "import",
        help="store NDJSON events (an export) in a bucket",
        description="Ingest NDJSON events into a bucket, 5,000 at a time, each batch confirmed by the store. "
        "Events keep their id and `at`, so importing the same file twice stores nothing twice.",
    )
    imp.add_argument("--store", default=None, help=STORE_HELP)
    imp.add_argument("--bucket", required=True)
    imp.add_argument("file", nargs="?", default="-", help="the NDJSON file (default: stdin)")
    imp.set_defaults(func=_import)

    migrate = sub.add_parser(
        "migrate",
        help="copy every event from one store to another, resumably, then verify",
        description="Copy the events of every bucket (or of --bucket) from one store to another, e.g. SQLite to "
        "InfluxDB. A checkpoint file in the working directory records each acknowledged batch: run the same "
        "command again after an interruption (even kill -9) and it continues, storing nothing twice. At the end "
        "both sides are read again and compared: events per name and app, and a digest of every event.",
    )
    migrate.add_argument("--from", dest="source", required=True, help="the store to read, e.g. sqlite:///PATH")
    migrate.add_argument("--to", dest="destination", required=True, help="the store to write")
    migrate.add_argument("--bucket", action="append", default=None, help="only this bucket (repeat); default: all")
    migrate.add_argument("--since", default=None, help="only events from this time: epoch ms or ISO 8601")
    migrate.add_argument("--checkpoint", default=None, help="the checkpoint file (default: derived from the arguments)")
    migrate.add_argument("--no-verify", action="store_true", help="skip the verification at the end")
    migrate.set_defaults(func=_migrate)


def _store(url: str | None) -> Store:
    settings = load_settings(store_url=url)
    try:
        return open_store(settings.resolved_store_url(), settings)
    except ValueError as exc:
        raise ConfigError(f"store URL: {exc}") from None


def _time(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text) if text.isdigit() else parse_time(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def _bucket(bucket: str) -> str:
    try:
        return check_bucket(bucket)
    except Exception:
        raise ConfigError(f"--bucket {bucket!r}: 1-64 characters of [A-Za-z0-9_.-]") from None


@contextlib.asynccontextmanager
async def _opened(*stores: Store) -> AsyncIterator[None]:
    try:
        for s in stores:
            await s.open()
        yield
    finally:
        for s in stores:
            await s.close()


def _run(command: str, main: object) -> int:
    try:
        return int(asyncio.run(main))  # type: ignore[arg-type]
    except StoreUnavailable as exc:
        print(f"eventsapi {command}: the store is unavailable: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"eventsapi {command}: interrupted", file=sys.stderr)
        return 130


def _export(args: argparse.Namespace) -> int:
    from eventsapi.stores.base import export_pages
    from eventsapi.transfer import export_lines

    store = _store(args.store)
    q = ExportQuery(
        _bucket(args.bucket), args.event_name, args.app_name, args.server_name,
        _time(args.start, "--start"), _time(args.end, "--end"),
    )  # fmt: skip

    async def main() -> int:
        out = sys.stdout.buffer
        n = 0
        async with _opened(store):
            async for rows, _ in export_pages(store, q):
                out.write(export_lines(rows))
                n += len(rows)
        out.flush()
        print(f"exported {n:,} events of bucket {q.bucket}", file=sys.stderr)
        return 0

    return _run("export", main())


def _import(args: argparse.Namespace) -> int:
    from eventsapi.transfer import import_lines

    store = _store(args.store)
    bucket = _bucket(args.bucket)

    async def main() -> int:
        with contextlib.ExitStack() as stack:
            lines = sys.stdin.buffer if args.file == "-" else stack.enter_context(open(args.file, "rb"))
            async with _opened(store):
                stored, refused = await import_lines(store, bucket, lines)
        print(f"imported {stored:,} events into bucket {bucket}", file=sys.stderr)
        for reason in refused[:20]:
            print(f"  refused {reason}", file=sys.stderr)
        if refused:
            print(f"{len(refused):,} events refused (not stored)", file=sys.stderr)
        return 1 if refused else 0

    return _run("import", main())


def _migrate(args: argparse.Namespace) -> int:
    from eventsapi.transfer import Checkpoint, Progress, checkpoint_path, copy_bucket, tally, verification_table

    source, destination = _store(args.source), _store(args.destination)
    since = _time(args.since, "--since")
    wanted = [_bucket(b) for b in args.bucket or []]

    async def main() -> int:
        async with _opened(source, destination):
            buckets = wanted or await source.buckets()
            path = Path(args.checkpoint) if args.checkpoint else checkpoint_path(
                args.source, args.destination, buckets, since
            )  # fmt: skip
            checkpoint = Checkpoint.load(path)
            sizes = [await source.size(b) for b in buckets]
            total = None if since is not None or None in sizes else sum(s or 0 for s in sizes)
            resumed = sum(checkpoint.copied(b) for b in buckets)
            print(
                f"migrating {len(buckets)} bucket(s){f' ({total:,} events)' if total is not None else ''}; "
                f"checkpoint {path}" + (f", resuming after {resumed:,} events" if resumed else ""),
                file=sys.stderr,
            )
            progress = Progress(total)
            progress.done = resumed
            for bucket in buckets:
                await copy_bucket(source, destination, bucket, since, checkpoint, progress.add)
            progress.finish()
            if args.no_verify:
                return 0
            print("verifying: reading both sides again", file=sys.stderr)
            results = {b: (await tally(source, b, since), await tally(destination, b, since)) for b in buckets}
            table, ok = verification_table(results)
            print(table, end="")
            print("verified: equal" if ok else "verification FAILED: the stores differ", file=sys.stderr)
            return 0 if ok else 1

    return _run("migrate", main())
