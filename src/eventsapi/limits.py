"""The contract's fixed limits on input (docs/api.md), in one place for every module."""

from __future__ import annotations

MAX_NAME = 256  # characters of an event, app or server name
MAX_ID = 128  # characters of an event id
MAX_DATA_BYTES = 64 * 1024  # an event's `data`, serialised
FUTURE_SLACK_MS = 24 * 3600 * 1000  # how far past now an event may be stamped
MAX_TIME_MS = (2**63 - 1) // 1_000_000  # the last millisecond InfluxDB's int64 nanoseconds can hold
MAX_CURSOR_CHARS = 1024  # an encoded cursor is (at, id): far below this
MAX_WINDOWS = 100_000  # windows in one histogram
MAX_TOP = 50  # series of a breakdown by app or server, besides "other"
MAX_GROUP_POINTS = 2_000_000  # windows times series in one breakdown
BUCKET_PATTERN = "^[A-Za-z0-9_.-]{1,64}$"  # a bucket id
REQUEST_LINE_BYTES = 64 * 1024  # a request's method, path and query (docs/api.md §4)
