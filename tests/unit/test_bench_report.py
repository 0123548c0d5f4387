"""``benchmarks._report.paired_medians``: both sides sampled alternately, medians of each."""

from __future__ import annotations

import time

from benchmarks._report import paired_medians


def test_sides_alternate_and_each_gets_its_own_median() -> None:
    order: list[str] = []

    def ours() -> None:
        order.append("ours")
        time.sleep(0.002)

    def base() -> None:
        order.append("base")
        time.sleep(0.006)

    a, b = paired_medians(ours, base, repeat=5, warmup=1)
    # One warm-up pair, then five timed pairs, never two of a side in a row.
    assert order == ["ours", "base"] * 6
    assert 0.002 <= a < b
    assert b >= 0.006
