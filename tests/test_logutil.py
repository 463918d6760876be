"""pyetcd/logutil.py: the timestamp layouts of etcd's two loggers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from pyetcd.logutil import _format_ts


@pytest.fixture
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.parametrize(
    ("now", "text"),
    [
        (1700000000.123456, "2023-11-14T22:13:20.123456Z"),
        (1700000000.5, "2023-11-14T22:13:20.5Z"),  # Go's .999999 drops trailing zeros
        (1700000000.0, "2023-11-14T22:13:20Z"),  # ... and the dot with them
        (1700000000.0625, "2023-11-14T22:13:20.0625Z"),  # leading zeros kept
    ],
)
def test_iso8601_has_microseconds_as_etcd_3_5_8(utc: None, now: float, text: str) -> None:
    # etcd 3.5.8 (#15240): "2006-01-02T15:04:05.999999Z0700"; 3.5.1 wrote milliseconds
    assert _format_ts(now, "iso8601") == text


def test_bootstrap_logger_writes_epoch_seconds() -> None:
    assert _format_ts(1700000000.25, "epoch") == 1700000000.25
