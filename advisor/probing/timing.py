"""The measurement loop: warm up, choose an iteration count, repeat, summarise.

The clock and the synchronize function are parameters, so the loop is tested exactly with a
scripted clock; on a GPU the device's region timer (``advisor.device.CudaDevice``: CUDA events)
times regions instead.  No torch here.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from advisor.device import RegionTimer, clock_region_timer
from advisor.errors import AdvisorError
from advisor.probing.results import Measurement, Sample

__all__ = ["MAX_ITERATIONS", "RegionTimer", "Sampler", "clock_region_timer", "measure"]

#: The most iterations one timed region may hold, whatever the calibration says (a safety bound).
MAX_ITERATIONS = 1_000_000
#: How many times a region that fell short of ``min_region_s`` is re-sized before its times are kept anyway.
MAX_RESIZES = 3

def measure(fn: Callable[[], None], *, clock: Callable[[], float] = time.perf_counter,
            synchronize: Callable[[], None] = lambda: None, region_timer: RegionTimer | None = None,
            min_region_s: float = 1e-3, repetitions: int = 5, warmup_min: int = 3, warmup_max: int = 50,
            warmup_tolerance: float = 0.05, warmup_max_s: float = 1.0, warmup_min_s: float = 0.0,
            before_repetition: Callable[[], None] | None = None, spread_limit: float = 0.10,
            max_iterations: int = MAX_ITERATIONS) -> Measurement:
    """Time ``fn`` carefully and return per-iteration times of each repetition.

    1. Warm up: call ``fn`` one at a time until the last ``warmup_min`` single-call times agree
       within ``warmup_tolerance`` (clocks and caches have settled), at most ``warmup_max`` calls
       or ``warmup_max_s`` seconds, and for at least ``warmup_min_s`` seconds (GPU clocks ramp up).
    2. Choose ``iterations = ceil(min_region_s / single-call time)`` so each timed region lasts at
       least ``min_region_s`` and the clock's own cost is negligible.
    3. Time ``repetitions`` regions; ``before_repetition`` (e.g. an L2 flush) runs untimed before each.
       A region shorter than ``min_region_s`` (back to back, calls run faster than one alone: a single
       GPU call also pays its launch latency) re-sizes ``iterations`` from that region's own per-call
       time and starts the repetitions again, at most ``MAX_RESIZES`` times.

    Args:
        fn: the work of one iteration (launches kernels; need not synchronize).
        clock: seconds, monotonic (``time.perf_counter``).
        synchronize: waits for queued device work (``torch.cuda.synchronize``); no-op on CPU.
        region_timer: times ``n`` calls of ``fn`` in seconds; defaults to clock + synchronize.
        min_region_s: shortest timed region in seconds (>= 1 ms).
        repetitions: timed regions (>= 5 for a trustworthy result).
    """
    if repetitions < 1:
        raise AdvisorError(f"repetitions must be >= 1, got {repetitions}", hint="5 or more for a trustworthy result")
    timer = region_timer or clock_region_timer(clock, synchronize)
    singles: list[float] = []
    warm_total = 0.0
    while len(singles) < warmup_max:
        t = timer(fn, 1)
        singles.append(t)
        warm_total += t
        last = singles[-warmup_min:]
        settled = len(last) == warmup_min and min(last) > 0 and max(last) / min(last) - 1 <= warmup_tolerance
        if settled and warm_total >= warmup_min_s:
            break
        if warm_total >= warmup_max_s:
            break
    single = min(singles[-warmup_min:]) if singles else 0.0
    # The small epsilon keeps float noise in clock differences from adding an iteration (4.0000001 -> 4).
    wanted = math.ceil(min_region_s / single - 1e-6) if single > 0 else max_iterations
    iterations = max(1, min(max_iterations, wanted))
    times: list[float] = []
    resizes = 0
    while len(times) < repetitions:
        if before_repetition is not None:
            before_repetition()
        region = timer(fn, iterations)
        if 0 < region < min_region_s * (1 - 1e-6) and iterations < max_iterations and resizes < MAX_RESIZES:
            # 5% headroom so noise around the new size does not fall short again.
            wanted = math.ceil(1.05 * min_region_s / (region / iterations))
            iterations = max(iterations + 1, min(max_iterations, wanted))
            resizes += 1
            times.clear()
            continue
        times.append(region / iterations)
    return Measurement(times_s=tuple(times), iterations=iterations, warmup_iterations=len(singles),
                       min_region_s=min_region_s, spread_limit=spread_limit)


class Sampler:
    """Samples device state (clocks, power, temperature, throttle reasons) on a background thread.

    Args:
        read: returns one ``Sample``-like reading (``t_s`` is filled in here); exceptions stop sampling.
        interval_s: seconds between readings (~0.1 s).
        clock: seconds, for the sample timestamps relative to start.
    """

    def __init__(self, read: Callable[[], Sample], interval_s: float = 0.1,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._read = read
        self._interval_s = interval_s
        self._clock = clock
        self._samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _one(self) -> bool:
        try:
            s = self._read()
        except AdvisorError:  # a sensor failing mid-run (DeviceError, a lost GPU) ends sampling, not the measurement
            return False
        t = self._clock() - self._t0
        self._samples.append(Sample(t_s=t, sm_clock_mhz=s.sm_clock_mhz, mem_clock_mhz=s.mem_clock_mhz,
                                    power_draw_w=s.power_draw_w, temperature_c=s.temperature_c,
                                    throttle_reasons=s.throttle_reasons))
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            if not self._one():
                return

    def __enter__(self) -> Sampler:
        self._t0 = self._clock()
        self._one()  # one reading at the start, so even a short kernel has a sample
        self._thread = threading.Thread(target=self._loop, name="probe-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._one()  # and one at the end

    @property
    def samples(self) -> tuple[Sample, ...]:
        """The readings taken so far."""
        return tuple(self._samples)
