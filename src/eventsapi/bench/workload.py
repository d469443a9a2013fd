"""The synthetic events a benchmark sends, and its batches of them."""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from eventsapi import wire
from eventsapi.values import NewEvent


@dataclass
class Workload:
    events: list[NewEvent]
    names: list[str]
    apps: list[str]

    @classmethod
    def make(
        cls, args: argparse.Namespace, now_ms: int, order: str = "time", count: int | None = None, seed: int = 42
    ) -> Workload:
        """`count` (default --events) events over --spread; `order` "time" as producers send
        them, "random" as a backfill, an import or a merge of late producers does."""
        rnd = random.Random(seed)
        count = args.events if count is None else count
        names = [f"event-{i}" for i in range(args.names)]
        apps = [f"app-{i}" for i in range(args.apps)]
        servers = [f"server-{i}" for i in range(args.servers)]
        pad = "x" * max(0, args.payload - 30)
        spread_ms = int(args.spread * 1000)
        prefix = uuid.uuid4().hex[:8]
        # In time order, as producers send them: each batch covers its own stretch of the
        # history (the InfluxDB stores read what a batch's time span already holds).
        ats = sorted(now_ms - rnd.randrange(spread_ms) for _ in range(count))
        events = [
            NewEvent(
                f"{prefix}-{i:09d}",
                rnd.choice(names),
                rnd.choice(apps),
                rnd.choice(servers),
                ats[i],
                json.dumps({"seq": i, "pad": pad}, separators=(",", ":")),
            )
            for i in range(count)
        ]
        if order == "random":
            rnd.shuffle(events)
        return cls(events, names, apps)

    def batches(self, size: int) -> list[Sequence[NewEvent]]:
        return [self.events[i : i + size] for i in range(0, len(self.events), size)]

    @staticmethod
    def encoded_events(batch: Sequence[NewEvent]) -> list[msgspec.Raw]:
        """Each event as the JSON object a producer sends, encoded ahead of time."""
        return [
            msgspec.Raw(msgspec.json.encode(wire.FlatEvent(e.name, e.app, e.server, e.at, msgspec.Raw(e.data), e.id)))
            for e in batch
        ]
