"""The refusal sampler: token buckets per (gateway, reason, source) and overall; the rest tallied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service import refusals
from service.refusals import RefusalSampler, TokenBucket, source_of

T0 = datetime(2026, 12, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_gives_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert [bucket.take(0.5), bucket.take(0.5)] == [True, False]  # 0.5 s at 2/s: one token
    assert sum(bucket.take(100.0) for _ in range(10)) == 3  # never more than the burst


def test_each_key_has_its_own_budget_and_all_share_a_total() -> None:
    clock = Clock()
    sampler = RefusalSampler(rate=0.1, burst=2, total=5.0, clock=clock)
    a, b = ("stripe", "signature", "198.51.100.1"), ("stripe", "signature", "198.51.100.2")
    assert [sampler.admit(a) for _ in range(3)] == [True, True, False]
    assert [sampler.admit(b) for _ in range(3)] == [True, True, False]
    many = [sampler.admit(("stripe", "signature", f"203.0.113.{n}")) for n in range(10)]
    assert sum(many) == 1  # 5 total tokens, 4 spent on a and b: spreading over sources gains nothing


def test_tallies_count_what_was_not_stored_and_overflow_to_any_source() -> None:
    sampler = RefusalSampler(rate=1.0, burst=1, total=10.0, clock=Clock())
    key = ("momo", "signature", "198.51.100.1")
    for n in range(5):
        sampler.tally(key, f"hash{n}", T0 + timedelta(seconds=n))
    for n in range(refusals.MAX_TALLIES + 3):
        sampler.tally(("vnpay", "malformed", f"src{n}"), "h", T0)
    drained = {(t.provider, t.source): t for t in sampler.drain()}
    first = drained[("momo", "198.51.100.1")]
    assert (first.count, first.first_seen, first.last_seen, first.sample_body_sha256) == (
        5,
        T0,
        T0 + timedelta(seconds=4),
        "hash0",
    )
    assert drained[("vnpay", refusals.ANY_SOURCE)].count == 4
    assert len(drained) <= refusals.MAX_TALLIES + 1
    assert sampler.drain() == []


def test_tallies_a_flush_could_not_write_are_merged_back() -> None:
    sampler = RefusalSampler(rate=1.0, burst=1, total=10.0, clock=Clock())
    key = ("stripe", "replay", "?")
    sampler.tally(key, "h1", T0)
    failed = sampler.drain()
    sampler.tally(key, "h2", T0 + timedelta(seconds=9))
    sampler.restore(failed)
    [merged] = sampler.drain()
    assert (merged.count, merged.first_seen, merged.last_seen) == (2, T0, T0 + timedelta(seconds=9))


def test_sources() -> None:
    assert source_of("203.0.113.7") == "203.0.113.7"
    assert source_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"  # one IPv6 host owns a /64
    assert source_of("::ffff:203.0.113.7") == "203.0.113.7"
    assert source_of(None) == "?"


def test_bucket_memory_is_bounded() -> None:
    sampler = RefusalSampler(rate=1.0, burst=1, total=1e9, clock=Clock())
    for n in range(refusals.MAX_BUCKETS + 50):
        sampler.admit(("stripe", "signature", str(n)))
    assert len(sampler.buckets) == refusals.MAX_BUCKETS


def test_buckets_are_held_only_for_keys_refused_within_burst_over_rate_seconds() -> None:
    # A refilled bucket is a new one: a key refused once and not since costs no memory 20 s later,
    # however many distinct sources have come and gone (bench/memory.py: a bucket is ~340 bytes).
    clock = Clock()
    sampler = RefusalSampler(rate=1.0, burst=20, total=1e9, clock=clock)
    for n in range(3_000):  # 3,000 new sources, one every 10 ms: 30 s in all
        clock.now = n / 100
        sampler.admit(("momo", "signature", f"198.18.{n // 256}.{n % 256}"))
    # Each new source spent a token: its bucket is full again 1 s after it came; a source is
    # dropped once a later new key finds it full (LRU order), so about the last 100 are held.
    assert 90 <= len(sampler.buckets) <= 110
    drained = ("momo", "signature", "203.0.113.1")
    assert [sampler.admit(drained) for _ in range(21)] == [True] * 20 + [False]
    clock.now += 19.5  # not refilled yet: its bucket must be kept, or it would start full again
    sampler.admit(("momo", "signature", "203.0.113.2"))
    assert drained in sampler.buckets
    assert [sampler.admit(drained) for _ in range(20)] == [True] * 19 + [False]  # 19.5 tokens came back


def test_a_key_admitted_again_keeps_its_bucket_until_it_refills() -> None:
    clock = Clock()
    sampler = RefusalSampler(rate=0.5, burst=2, total=1e9, clock=clock)
    key = ("vnpay", "signature", "198.51.100.7")
    assert [sampler.admit(key) for _ in range(3)] == [True, True, False]
    clock.now = 3.0  # 1.5 tokens back of 2: not full
    sampler.admit(("vnpay", "signature", "198.51.100.8"))
    assert key in sampler.buckets
    clock.now = 8.0  # refilled: the next new key drops both
    sampler.admit(("vnpay", "signature", "198.51.100.9"))
    assert list(sampler.buckets) == [("vnpay", "signature", "198.51.100.9")]
