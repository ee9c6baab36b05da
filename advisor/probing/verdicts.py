"""Plain-words verdicts on a probe: what a user should fix, each with its evidence. Pure Python."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

from advisor.probing.nvml import POWER_REASONS, THERMAL_REASONS
from advisor.probing.results import DeviceInfo, KernelResult, Verdict

#: Expected fractions of spec peak below which a figure is called "far below expected".
MATMUL_MIN_FRACTION = 0.50
COPY_MIN_FRACTION = 0.70
TRANSFER_MIN_FRACTION = 0.60
POWER_LIMIT_TOLERANCE = 0.98  # a limit within 2% of the default is the default
#: Under a power cap the SM clock may drop this far below its max and still be normal (an H200 at 700 W
#: ran its GEMMs at 1500-1980 MHz of 1980 on 2026-11-28: 76% at the lowest sample).
LOADED_CLOCK_MIN_FRACTION = 0.70


def device_verdicts(dev: DeviceInfo, kernels: Sequence[KernelResult] = (),
                    own_pids: Iterable[int] = ()) -> list[Verdict]:
    """Verdicts about one device from its inventory and the kernels measured on it."""
    i = dev.index
    out: list[Verdict] = []
    if dev.error:
        return [Verdict("problem", "device_failed", f"device {i} could not be queried", dev.error, i)]
    if dev.kind == "cpu":
        return _kernel_verdicts(i, kernels)  # no health sensors on a CPU; its measurements can still be noisy
    live_gen = _live_pcie_gen(kernels)
    if live_gen is not None and dev.pcie_gen_max is not None and live_gen < dev.pcie_gen_max:
        out.append(Verdict("warning", "pcie_gen_low",
                           "PCIe link runs below its max generation under load (check the slot, riser and BIOS "
                           "PCIe setting)", f"gen {live_gen} during transfers, max {dev.pcie_gen_max}", i))
    elif (live_gen is None and dev.pcie_gen is not None and dev.pcie_gen_max is not None
          and dev.pcie_gen < dev.pcie_gen_max):
        # Idle GPUs train the link down to save power, so an idle reading alone is not a fault.
        out.append(Verdict("info", "pcie_gen_low",
                           "PCIe link is below its max generation while idle (normal power saving); "
                           "run the transfer kernels to check it under load",
                           f"gen {dev.pcie_gen} of max {dev.pcie_gen_max}", i))
    if dev.pcie_width is not None and dev.pcie_width_max is not None and dev.pcie_width < dev.pcie_width_max:
        out.append(Verdict("problem", "pcie_width_low",
                           "PCIe link trained narrower than the card supports (wrong slot, riser or bad seating)",
                           f"x{dev.pcie_width} of max x{dev.pcie_width_max}", i))
    if (dev.power_limit_w is not None and dev.default_power_limit_w
            and dev.power_limit_w < POWER_LIMIT_TOLERANCE * dev.default_power_limit_w):
        out.append(Verdict("warning", "power_limit_low", "power limit set below the card's default",
                           f"{dev.power_limit_w:.0f} W enforced, default {dev.default_power_limit_w:.0f} W", i))
    seen = set(dev.throttle_reasons or ())
    for k in kernels:
        for s in k.samples:
            seen.update(s.throttle_reasons or ())
    thermal = sorted(seen & THERMAL_REASONS)
    if thermal:
        temps = [s.temperature_c for k in kernels for s in k.samples if s.temperature_c is not None]
        hot = f"; up to {max(temps)} C" if temps else (f"; {dev.temperature_c} C" if dev.temperature_c else "")
        out.append(Verdict("problem", "thermal_throttling", "clocks were slowed by heat: check cooling and airflow",
                           f"clock-event reasons {', '.join(thermal)}{hot}", i))
    out.extend(_power_verdicts(dev, kernels))
    if dev.ecc_uncorrected_errors:
        out.append(Verdict("problem", "ecc_errors", "uncorrected ECC memory errors were recorded",
                           f"{dev.ecc_uncorrected_errors} uncorrected errors (aggregate)", i))
    if dev.retired_pages:
        out.append(Verdict("warning", "retired_pages", "memory pages have been retired after ECC errors",
                           f"{dev.retired_pages} retired pages", i))
    if dev.remapped_rows_failure or dev.remapped_rows_pending:
        out.append(Verdict("problem", "row_remap", "memory row remapping failed or awaits a GPU reset",
                           f"pending={dev.remapped_rows_pending}, failure={dev.remapped_rows_failure}", i))
    own = set(own_pids) | {os.getpid()}
    others = [p for p in dev.processes or () if p.pid not in own]
    if others:
        listed = ", ".join(f"{p.name or '?'} (pid {p.pid})" for p in others[:5])
        out.append(Verdict("warning", "other_processes",
                           "other processes are using this GPU; measurements may be low", listed, i))
    out.extend(_kernel_verdicts(i, kernels))
    return out


def _power_verdicts(dev: DeviceInfo, kernels: Sequence[KernelResult]) -> list[Verdict]:
    """Power capping: normal under a long GEMM, worth a warning when clocks sag far or it happens at rest."""
    i = dev.index
    idle_power = sorted(set(dev.throttle_reasons or ()) & POWER_REASONS)
    loaded = [s for k in kernels for s in k.samples if set(s.throttle_reasons or ()) & POWER_REASONS]
    out: list[Verdict] = []
    if idle_power:
        out.append(Verdict("warning", "power_capped_at_rest",
                           "the card was holding its clocks down for power before any work ran: check the power "
                           "limit (nvidia-smi -q -d POWER) and whether another process is using it",
                           f"clock-event reasons {', '.join(idle_power)} in the idle reading", i))
    if not loaded:
        return out
    clocks = sorted(s.sm_clock_mhz for s in loaded if s.sm_clock_mhz)
    reasons = sorted({r for s in loaded for r in (s.throttle_reasons or ()) if r in POWER_REASONS})
    top = dev.sm_clock_max_mhz
    median = clocks[len(clocks) // 2] if clocks else None
    if median is not None and top and median < LOADED_CLOCK_MIN_FRACTION * top:
        out.append(Verdict("warning", "power_throttling",
                           f"under load the card hit its power limit and its clock fell far below its max "
                           f"(median {median} MHz, {median / top:.0%} of {top:g} MHz): expect lower speed than "
                           "the spec; check the power limit, the supply and the cooling",
                           f"{len(loaded)} samples with {', '.join(reasons)}; expected >= "
                           f"{LOADED_CLOCK_MIN_FRACTION:.0%} of the max clock", i))
    else:
        clock_note = f"; median SM clock {median} MHz of {top:g}" if median is not None and top else ""
        out.append(Verdict("info", "power_capped_under_load",
                           "the card reached its power limit during the heaviest kernels: normal for long matrix "
                           "multiplies on this class of card; clocks stayed near their max",
                           f"{len(loaded)} samples with {', '.join(reasons)}{clock_note}", i))
    return out


_LIVE_LINK = re.compile(r"against PCIe gen(\d+) x(\d+) read during the transfer")


def _live_pcie_gen(kernels: Sequence[KernelResult]) -> int | None:
    """The highest PCIe generation read while a transfer ran (see kernels._against_live_link), if any."""
    gens = [int(m.group(1)) for k in kernels for note in k.notes if (m := _LIVE_LINK.search(note))]
    return max(gens) if gens else None


def _best(kernels: Sequence[KernelResult], name: str, precision: str | None = None) -> KernelResult | None:
    cands = [k for k in kernels if k.ok and k.name == name and k.fraction_of_peak is not None
             and (precision is None or k.precision == precision)]
    return max(cands, key=lambda k: k.fraction_of_peak or 0.0) if cands else None


def _kernel_verdicts(i: int, kernels: Sequence[KernelResult]) -> list[Verdict]:
    from advisor.probing.kernels import ABOVE_PEAK

    out: list[Verdict] = []
    above = [k for k in kernels if k.error and k.error.startswith(ABOVE_PEAK)]
    if above:
        names = ", ".join(f"{k.name} {k.precision or ''} {k.shape}".replace("  ", " ") for k in above[:4])
        out.append(Verdict("problem", "above_spec_peak",
                           f"{len(above)} measurement(s) came out above the card's spec peak, which cannot be: "
                           "a cheaper mode ran than the one named (e.g. TF32 for fp32) or the spec is wrong; "
                           "they are left out of the results", names + ("..." if len(above) > 4 else ""), i))
    for prec in ("bf16", "fp16", "tf32", "fp32"):
        k = _best(kernels, "matmul", prec)
        if k is not None and k.fraction_of_peak is not None and k.fraction_of_peak < MATMUL_MIN_FRACTION:
            out.append(Verdict("warning", f"matmul_{prec}_low",
                               f"{prec} matmul is far below the spec's dense peak",
                               f"best {k.value:.1f} {k.unit} at {k.shape} = {k.fraction_of_peak:.0%} of "
                               f"{k.spec_peak:g} (expected >= {MATMUL_MIN_FRACTION:.0%})", i))
    k = _best(kernels, "memory_copy")
    if k is not None and k.fraction_of_peak is not None and k.fraction_of_peak < COPY_MIN_FRACTION:
        out.append(Verdict("warning", "bandwidth_low", "device memory copy is far below the spec bandwidth",
                           f"{k.value:.0f} GB/s = {k.fraction_of_peak:.0%} of {k.spec_peak:g} GB/s "
                           f"(expected >= {COPY_MIN_FRACTION:.0%})", i))
    for name in ("h2d_pinned", "d2h_pinned"):
        k = _best(kernels, name)
        if k is not None and k.fraction_of_peak is not None and k.fraction_of_peak < TRANSFER_MIN_FRACTION:
            out.append(Verdict("warning", f"{name}_low", f"{name.replace('_', ' ')} transfer is far below the "
                               "current PCIe link's peak",
                               f"{k.value:.1f} GB/s = {k.fraction_of_peak:.0%} of {k.spec_peak:g} GB/s", i))
    untrusted = [k for k in kernels if k.ok and k.measurement is not None and not k.measurement.trustworthy]
    if untrusted:
        names = ", ".join(f"{k.name} {k.precision or ''} {k.shape}".replace("  ", " ") for k in untrusted[:4])
        out.append(Verdict("info", "noisy_measurements",
                           f"{len(untrusted)} measurement(s) varied too much between repetitions to trust",
                           names + ("..." if len(untrusted) > 4 else ""), i))
    return out


def probe_verdicts(devices: Sequence[DeviceInfo], kernels: Sequence[KernelResult],
                   unavailable: Sequence[str] = ()) -> list[Verdict]:
    """All verdicts: backend notes (e.g. NVML unavailable) as info, then per device; "ok" when nothing is wrong."""
    out = [Verdict("info", "backend_unavailable", note.split(":", 1)[0], note, None) for note in unavailable]
    for dev in devices:
        found = device_verdicts(dev, [k for k in kernels if k.device_index == dev.index])
        if not found and dev.kind == "gpu":
            found = [Verdict("ok", "healthy", f"device {dev.index} looks healthy",
                             "no PCIe, power, thermal, ECC or process issue found", dev.index)]
        out.extend(found)
    return out
