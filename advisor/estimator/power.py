"""Sustained clock under the power cap: the fraction of the boost clock a card holds under a long dense GEMM.

A spec sheet's FLOP rates are counted at the boost clock.  A card whose power cap is small for its die
cannot hold that clock under a dense GEMM: the firmware lowers the clock until the board draws its cap
(NVIDIA's "SW Power Cap" clock-event reason).  The T4 (TU104, 70 W) is the known case: at 1,590 MHz
applications clocks it fell to about 900 MHz under an MLPerf BERT run (mlcommons/inference_results_v0.5
issue #20, 2020), and Jia et al. ("Dissecting the NVidia Turing T4 GPU via Microbenchmarking", 2019, section
on clock throttling) show its compute-heavy kernels throttle at the cap.

Mechanism (``sustained_clock``):

* Power a die needs at its boost clock under a dense GEMM ~ the architecture's watts per SM per GHz x SMs x
  boost GHz.  The watts per SM per GHz of an architecture come from a named full-power card of the same
  architecture (its profile's ``power_reference``), whose TDP is taken as what its die draws at the clock it holds
  there (``gemm_clock``; boost where none is on record).
* Below that, power falls with the clock as ``P ~ C V^2 f``: P ~ f^3 while the voltage tracks the clock, P ~ f
  at the voltage floor (textbook DVFS; e.g. Mei et al., "A Survey and Measurement Study of GPU DVFS on Energy
  Conservation", 2017).  A capped low-power card runs in between, near its floor: exponent ``POWER_EXPONENT``
  = 2, so the sustained fraction is ``sqrt(TDP / P_needed)``, never below the datasheet base clock (NVIDIA's
  base clock is the clock guaranteed at TDP) and never above 1.
* GeForce cards run ABOVE their rated boost clock at their power cap (NVIDIA GPU Boost: the rated figure is a
  typical clock, not a ceiling): their profile's ``clock_geforce`` (1.08 on Ada and GA10x, from public clock logs
  at the cap; the profile cites them).
* A family whose power reference was seen at its cap under load, at a clock on record (``gemm_clock`` != 1), holds
  that clock on the reference and, on its other cards, the same fraction scaled as the square root of their watts
  per SM-GHz over the reference's (the exponent-2 rule), up to the card's boost (a GeForce card's
  ``clock_geforce``): AMD CDNA 3, an MI300X at 1,207 of 2,100 MHz under hipBLASLt bf16 (AMD's MAF measurement; the
  MI325X at 1000 W checks it: 0.664 predicted, 0.689 measured); Hopper, the H100 SXM at ~0.79 of boost at 590-690 W
  of its 700 W cap under the shared probe's GEMMs (the 350 W H100 PCIe: 0.64, its square GEMM measured at 0.63 of
  the SXM's rate; the H200, same cap: 0.79, its probe 0.83); Ada, the RTX 4090 at 1.08x boost at its 450 W cap (the
  350 W L40S: 0.90, its square GEMM measured at 0.74 of its peak where the 4090 reaches 1.0).  A module whose TDP
  also feeds a CPU (a chip-to-chip link in the catalog: GH200) is not scaled above the reference.  Families with
  no such record (``gemm_clock`` 1: GA100, whose 250 W PCIe card measured 0.93 of the 400 W SXM's GEMM rate, so
  the SXM is not at its cap) keep their boost clock outside the power-limited classes below.
* Power-limited classes: cards powered by the PCIe slot alone (TDP <= 75 W, PCI Express CEM specification: 75 W
  from an x16 slot; T4, L4, A2, P4) and laptop parts, priced by the reference's watts per SM-GHz at the clock it
  holds at its cap.  Jetson (edge) modules keep 1.0: their catalog clock is already the nvpmodel power mode's
  GPU clock cap, which the mode's budget is specified at (NVIDIA Jetson Linux Developer Guide, "Power
  Management", nvpmodel tables).  Cards without a boost clock or SM count in the catalog keep 1.0; a probe's
  clock samples replace all of this.

Which kernels take that clock (``low_draw_clock``): the clock is a property of a kernel's power draw.  A dense GEMM
(and a convolution, the same tensor-core or SIMT tiles) is what pulls the board to its cap; elementwise, index-bound,
normalization and layout kernels stream memory with the SM's math units mostly idle and draw far less.  The shared
H100 probe (tests/data/gpu-runs/h100-2026-11-28/probe-full.json, NVML samples) shows it: every GEMM at 1,545-1,965 MHz
with "sw_power_cap" set at 513-691 W, every copy / read / write kernel at 1,980 MHz (the maximum) at 148-235 W of the
700 W cap with no clock-event reason, the H200's the same (1,500-1,965 vs 1,980 MHz at 149-228 W).  So those kernels
run at the boost clock, or above it where the card holds more at its cap (a GeForce card's ``clock_geforce``), never at
the GEMM's capped clock.  (A GDDR6X GeForce board can draw its cap on memory streaming alone: an RTX 3090 decoding at
315 W held 1,500-1,515 MHz, ashalliants/ninfer-3090 PR #72; there the low-draw clock is the card's clock at its cap,
``clock_geforce``, the same as its GEMMs'.)  The cap is held per kernel, not over a step's mean power (a step-mean
model failed the H100's own-probe replay: docs/accuracy.md).

Check against public measurements (not fitted): T4 predicted ~1,100 MHz (0.69 of boost) vs ~900 MHz reported under
BERT; three T4 square-GEMM entries of one script (zzc0721/torch-performance-test-data, fp16 41.9-42.7 TFLOP/s) at the
RTX 2080's fraction of its peak (the T4's TU104 die at 215-225 W: 0.92-0.97 at a 1,710-1,800 MHz boost) put its
tensor-core clock at 0.66-0.71 of boost; its sustained SIMT SGEMM runs lower (~0.41-0.44: NeuSight's T4 linears of
3 ms-1 s, which its ``matmul_vector`` is fitted on at 0.69); L4 predicted ~1,400 MHz of 2,040 (NeuSight's held-out
L4 linear rows -39 -> -30%).

Pure arithmetic: no torch, no I/O (the reference cards are read from the catalog once).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from advisor.catalog import GpuSpec
from advisor.estimator.profiles import profile_for

#: PCI Express CEM specification: an x16 slot supplies up to 75 W; cards at or under it have no power connector.
SLOT_POWER_W = 75.0
#: P ~ f^k between the voltage-tracking range (k = 3) and the voltage floor (k = 1); see the module docstring.
POWER_EXPONENT = 2.0
#: The full-power card whose TDP sets an architecture's watts per SM per GHz at boost is its profile's
#: ``power_reference`` (the datacenter/workstation part on the family's largest die: l40s for Ada, quadro-rtx-6000
#: for Turing, rtx-a6000 for GA10x, ...).
SOURCE = ("power cap model: watts a die needs at boost = architecture's W per SM per GHz (from a full-power "
          "reference card) x SMs x boost GHz; clock falls as sqrt(TDP / needed) (P ~ C V^2 f near the voltage "
          "floor), not below the datasheet base clock; applied to slot-powered (<= 75 W, PCIe CEM) and laptop "
          "parts; checked against T4 ~900 MHz under BERT (mlcommons/inference_results_v0.5 issue #20)")


def low_draw_clock(gemm_clock: float) -> float:
    """The clock (a fraction of boost) of kernels that draw far below the power cap, given the dense GEMM's.

    Elementwise, index-bound, normalization and layout kernels: the boost clock, or the GEMM's where that is above
    boost (a GeForce card's ``clock_geforce``, or a probe's sample above the rated boost); see the module docstring
    for the H100/H200 probes' NVML samples behind it.
    """
    return max(gemm_clock, 1.0)


@dataclass(frozen=True, slots=True)
class SustainedClock:
    """The clock a card holds under a long dense GEMM, and why."""

    fraction: float
    boost_mhz: float | None
    note: str

    @property
    def mhz(self) -> float | None:
        """The sustained clock in MHz (``None`` without a catalog boost clock)."""
        return None if self.boost_mhz is None else self.boost_mhz * self.fraction


def power_limited(spec: GpuSpec) -> bool:
    """Whether the card belongs to a class that cannot hold boost under a dense GEMM at its TDP."""
    if spec.segment == "edge":
        return False
    laptop = "laptop" in spec.name.lower() or "mobile" in spec.name.lower()
    return spec.tdp_w <= SLOT_POWER_W or laptop


@functools.cache
def _density(ref_id: str, held: float = 1.0) -> tuple[float, str] | None:
    """Watts per SM per GHz of a profile's reference card at the clock it holds at its cap, and the card's id.

    ``held``: that clock as a fraction of its boost (its profile's ``gemm_clock``; 1.0 where unmeasured).
    """
    ref = _reference(ref_id)
    if ref is None or not ref.sm_count or not ref.boost_clock_mhz:
        return None
    return ref.tdp_w / (ref.sm_count * ref.boost_clock_mhz * held / 1000.0), ref_id


def sustained_clock(spec: GpuSpec) -> SustainedClock:
    """The fraction of the boost clock ``spec`` sustains under a long dense GEMM at its power cap."""
    boost = spec.boost_clock_mhz
    if not boost:
        return SustainedClock(1.0, None, "no boost clock in the catalog: spec-sheet rates taken as sustained")
    if spec.segment == "edge":
        return SustainedClock(1.0, boost, f"edge module: {boost:.0f} MHz is the power mode's GPU clock cap "
                                          f"(nvpmodel) at {spec.tdp_w:.0f} W, taken as held")
    profile = profile_for(spec)
    gemm_clock = profile.value("gemm_clock")
    over = profile.value("clock_geforce") if spec.segment == "geforce" else 1.0
    if gemm_clock != 1.0 and not power_limited(spec):
        return _measured_family_clock(spec, gemm_clock, profile.value("power_reference"),
                                      profile.figures["gemm_clock"].source, over)
    if not power_limited(spec):
        if over != 1.0:
            return SustainedClock(over, boost, f"GeForce card: {boost * over:.0f} MHz sustained, {over:.2f}x the "
                                               f"rated {boost:.0f} MHz boost at its {spec.tdp_w:.0f} W cap "
                                               f"({profile.figures['clock_geforce'].source})")
        return SustainedClock(1.0, boost, f"boost clock {boost:.0f} MHz taken as held at the full "
                                          f"{spec.tdp_w:.0f} W TDP (not a slot-powered or laptop part)")
    ref = _density(profile.value("power_reference"), gemm_clock)
    if ref is None or not spec.sm_count:
        return SustainedClock(1.0, boost, f"{spec.tdp_w:.0f} W part but no reference card or SM count for its "
                                          "architecture: boost clock taken as held")
    density, ref_id = ref
    needed = density * spec.sm_count * boost / 1000.0
    fraction = min(1.0, (spec.tdp_w / needed) ** (1.0 / POWER_EXPONENT))
    floor = (spec.base_clock_mhz / boost) if spec.base_clock_mhz else 0.0
    fraction = max(fraction, min(1.0, floor))
    return SustainedClock(fraction, boost,
                          f"sustained clock {boost * fraction:.0f} MHz of {boost:.0f} boost under the "
                          f"{spec.tdp_w:.0f} W cap (a dense GEMM at boost needs ~{needed:.0f} W at {ref_id}'s "
                          f"{density:.2f} W per SM-GHz; {SOURCE})")


def _measured_family_clock(spec: GpuSpec, measured: float, ref_id: str, source: str,
                           ceiling: float = 1.0) -> SustainedClock:
    """The clock a card holds under a dense GEMM from its family's measurement on ``ref_id`` (``gemm_clock``).

    ``measured`` is the fraction of its boost clock the reference holds at its power cap; another card of the family
    scales it by the square root of its watts per SM-GHz over the reference's (P ~ f^2, POWER_EXPONENT), up to
    ``ceiling`` (its rated boost, or a GeForce card's ``clock_geforce``).  A module whose TDP also feeds a CPU on a
    chip-to-chip link (the catalog's ``c2c_gbs``: GH200) is not scaled above the reference: the GPU's share of the
    module's watts is not in the catalog.
    """
    boost = spec.boost_clock_mhz or 0.0
    ref = _reference(ref_id)
    scale = 1.0
    if ref is not None and ref.id != spec.id and ref.boost_clock_mhz and boost:
        # watts per SM-GHz against the reference's; a family's cards without an SM count are taken as its die's
        units, ref_units = spec.sm_count or ref.sm_count or 1, ref.sm_count or spec.sm_count or 1
        scale = ((spec.tdp_w / (units * boost)) / (ref.tdp_w / (ref_units * ref.boost_clock_mhz))) ** (
            1.0 / POWER_EXPONENT)
        if spec.interconnect.c2c_gbs:
            scale = min(scale, 1.0)
    fraction = min(ceiling, measured * scale)
    return SustainedClock(fraction, boost, f"sustained clock {boost * fraction:.0f} MHz of {boost:.0f} boost under a "
                                           f"long dense GEMM at {spec.tdp_w:.0f} W (the family's reference {ref_id} "
                                           f"holds {measured:.2f} of its boost at its cap, scaled by the square root "
                                           f"of the watts per SM-GHz: {source})")


@functools.cache
def _reference(ref_id: str) -> GpuSpec | None:
    from advisor.catalog import load_specs

    return next((s for s in load_specs() if s.id == ref_id), None) if ref_id else None
