"""The measurement loop, driven by a scripted clock."""

from __future__ import annotations

import threading
import time

import pytest

from advisor.errors import AdvisorError, DeviceError
from advisor.probing.results import Measurement, Sample
from advisor.probing.timing import Sampler, clock_region_timer, measure
from tests.fakes import FakeClock


def test_iteration_count_makes_each_region_at_least_the_minimum() -> None:
    clock = FakeClock(costs=(2.5e-4,))
    m = measure(clock.work, clock=clock, synchronize=clock.synchronize, min_region_s=1e-3, repetitions=5)
    assert m.iterations == 4  # 4 x 0.25 ms = 1 ms
    assert m.warmup_iterations == 3  # three equal single calls: settled at once
    assert clock.calls == 3 + 5 * 4
    assert m.times_s == pytest.approx((2.5e-4,) * 5)
    assert m.median_s == pytest.approx(2.5e-4) and m.iqr_s == pytest.approx(0, abs=1e-12)
    assert m.trustworthy
    # Each timed region synchronizes before and after reading the clock.
    assert clock.syncs == 2 * (3 + 5)


def test_uneven_cost_rounds_the_iteration_count_up() -> None:
    clock = FakeClock(costs=(3e-4,))
    m = measure(clock.work, clock=clock, synchronize=clock.synchronize, min_region_s=1e-3)
    assert m.iterations == 4  # ceil(1 / 0.3)
    assert m.iterations * m.median_s >= 1e-3


def test_warmup_runs_until_the_last_calls_settle() -> None:
    clock = FakeClock(costs=(5e-3, 3e-3, 1.2e-3, 1e-3, 1e-3, 1e-3))
    m = measure(clock.work, clock=clock, synchronize=clock.synchronize, min_region_s=2e-3, repetitions=5)
    assert m.warmup_iterations == 6  # calls 4..6 are the first three that agree within 5%
    assert m.iterations == 2
    assert m.median_s == pytest.approx(1e-3)


def test_warmup_is_bounded_when_it_never_settles() -> None:
    clock = FakeClock(costs=(1e-3, 2e-3) * 100)
    m = measure(clock.work, clock=clock, synchronize=clock.synchronize, warmup_max=7, repetitions=5)
    assert m.warmup_iterations == 7


def test_warmup_is_bounded_in_time() -> None:
    clock = FakeClock(costs=(0.3, 0.6) * 10)
    m = measure(clock.work, clock=clock, synchronize=clock.synchronize, warmup_max_s=1.0, repetitions=5)
    assert m.warmup_iterations == 3  # 0.3 + 0.6 + 0.3 >= 1.0 s
    assert m.iterations == 1


def test_statistics_and_trustworthiness_from_scripted_repetitions() -> None:
    m = Measurement(times_s=(1.0, 2.0, 3.0, 4.0, 5.0), iterations=1)
    assert m.median_s == 3.0
    assert m.p10_s == pytest.approx(1.4) and m.p90_s == pytest.approx(4.6)
    assert m.iqr_s == pytest.approx(2.0)  # 4 - 2
    assert m.spread == pytest.approx(2 / 3)
    assert not m.trustworthy
    tight = Measurement(times_s=(1.00, 1.01, 0.99, 1.02, 1.0), iterations=1)
    assert tight.trustworthy
    too_few = Measurement(times_s=(1.0, 1.0, 1.0), iterations=1)
    assert not too_few.trustworthy
    assert Measurement.from_dict(m.to_dict()) == m
    assert m.to_dict()["trustworthy"] is False


def test_noisy_clock_flags_spread_and_is_reproducible() -> None:
    def run(seed: int) -> Measurement:
        clock = FakeClock(costs=(1e-3,), noise=0.5, seed=seed)
        return measure(clock.work, clock=clock, synchronize=clock.synchronize, min_region_s=1e-3,
                       warmup_max=5, repetitions=7)

    a, b = run(1), run(1)
    assert a == b
    assert len(a.times_s) == 7
    quiet = FakeClock(costs=(1e-3,), noise=0.01, seed=3)
    q = measure(quiet.work, clock=quiet, synchronize=quiet.synchronize, min_region_s=1e-2)
    assert q.trustworthy and q.spread < 0.05
    assert not a.trustworthy or a.spread <= a.spread_limit


def test_before_repetition_runs_untimed_before_each_repetition() -> None:
    clock = FakeClock(costs=(1e-3,))
    flushes: list[float] = []

    def flush() -> None:
        flushes.append(clock())
        clock.now_ns += 10_000_000  # 10 ms of flushing must not count

    m = measure(clock.work, clock=clock, synchronize=clock.synchronize, repetitions=6, before_repetition=flush)
    assert len(flushes) == 6
    assert m.median_s == pytest.approx(1e-3)


def test_bad_repetitions_rejected() -> None:
    with pytest.raises(AdvisorError, match="repetitions"):
        measure(lambda: None, repetitions=0)


def test_real_clock_region_timer_on_cpu() -> None:
    timer = clock_region_timer(time.perf_counter, lambda: None)
    assert timer(lambda: time.sleep(0.002), 2) >= 0.004


def test_sampler_collects_readings_while_running_and_survives_a_failing_sensor() -> None:
    n = {"calls": 0}
    lock = threading.Lock()

    def read() -> Sample:
        with lock:
            n["calls"] += 1
        return Sample(t_s=99.0, sm_clock_mhz=1500 + n["calls"], throttle_reasons=("sw_power_cap",))

    with Sampler(read, interval_s=0.01) as s:
        time.sleep(0.06)
    assert len(s.samples) >= 3  # start, some during, end
    assert s.samples[0].t_s < 99.0 and s.samples[0].throttle_reasons == ("sw_power_cap",)
    assert [x.t_s for x in s.samples] == sorted(x.t_s for x in s.samples)

    def broken() -> Sample:
        raise DeviceError("GPU is lost")  # what a backend's sample() raises for a sensor that is gone

    with Sampler(broken, interval_s=0.01) as s2:
        time.sleep(0.02)
    assert s2.samples == ()


def test_warmup_lasts_at_least_the_minimum_time() -> None:
    clock = FakeClock(costs=(1e-3,))
    m = measure(clock.work, clock=clock, synchronize=clock.synchronize, warmup_min_s=0.0095)
    assert m.warmup_iterations == 10  # settled after 3 calls, but 10 ms of warm-up were asked for


def test_a_region_short_of_its_minimum_is_resized_a_bounded_number_of_times() -> None:
    from advisor.probing.timing import MAX_RESIZES

    regions: list[int] = []

    def timer(fn: object, n: int) -> float:
        regions.append(n)
        return 1e-4  # never reaches the minimum, however many calls the region holds
    m = measure(lambda: None, region_timer=timer, min_region_s=1e-3, repetitions=3, warmup_max=3)
    timed = regions[3:]  # after three warm-up singles
    assert len(timed) == MAX_RESIZES + 3 and m.iterations == timed[-1] and len(m.times_s) == 3
    assert timed[:MAX_RESIZES + 1] == sorted(set(timed[:MAX_RESIZES + 1]))  # each resize grew the region
