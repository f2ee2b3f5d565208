"""The console's pure parts: the chart, the run window, where sign-in may send a browser back to."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from service.ops.actions import parse_since
from service.ops.chart import runs_chart
from service.ops.web import safe_next


def test_the_chart_draws_two_bars_per_run_scaled_to_the_largest() -> None:
    svg = runs_chart([(7, 4, 0), (8, 2, 8)])
    bars = re.findall(r'height="([\d.]+)" fill="#[0-9a-f]+"><title>', svg)  # the legend's swatches have no title
    heights = [float(h) for h in bars]
    assert len(heights) == 4
    assert heights[3] == max(heights)  # in-sync 8 of run 8 is the tallest
    assert heights[0] == pytest.approx(heights[3] / 2)  # repaired 4 of run 7 is half of it
    assert heights[1] == 0
    assert "run 7: 4 repaired" in svg
    assert "run 8: 8 in_sync" in svg
    assert "no finished runs yet" in runs_chart([])


def test_a_run_window_is_empty_a_duration_back_or_a_time() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_since("", now) is None
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("2026-11-30T00:00:00", now) == datetime(2026, 11, 30, tzinfo=UTC)
    assert parse_since("2026-11-30T00:00:00+07:00", now) == datetime(2026, 11, 29, 17, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("yesterday", now)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ops/runs/3?kind=error", "/ops/runs/3?kind=error"),
        ("//evil.example/ops", "/ops"),
        ("/\\evil.example", "/ops"),
        ("https://evil.example/ops", "/ops"),
        ("/v1/orders", "/ops"),
        (None, "/ops"),
    ],
)
def test_sign_in_only_sends_back_inside_the_console(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected
