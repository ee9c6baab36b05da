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
  architecture (``REFERENCE``), whose TDP is taken as what its die draws at boost.
* Below that, power falls with the clock as ``P ~ C V^2 f``: P ~ f^3 while the voltage tracks the clock, P ~ f
  at the voltage floor (textbook DVFS; e.g. Mei et al., "A Survey and Measurement Study of GPU DVFS on Energy
  Conservation", 2017).  A capped low-power card runs in between, near its floor: exponent ``POWER_EXPONENT``
  = 2, so the sustained fraction is ``sqrt(TDP / P_needed)``, never below the datasheet base clock (NVIDIA's
  base clock is the clock guaranteed at TDP) and never above 1.
* Applied to the power-limited classes only: cards powered by the PCIe slot alone (TDP <= 75 W, PCI Express
  CEM specification: 75 W from an x16 slot; T4, L4, A2, P4) and laptop parts.  Full-TDP desktop,
  workstation and datacenter cards keep 1.0 (their boost clock is taken as held; a probe's clock samples
  replace this).  Jetson (edge) modules keep 1.0: their catalog clock is already the nvpmodel power mode's
  GPU clock cap, which the mode's budget is specified at (NVIDIA Jetson Linux Developer Guide, "Power
  Management", nvpmodel tables).  Cards without a boost clock or SM count in the catalog keep 1.0.

Check against public measurements (not fitted): T4 predicted ~1,100 MHz vs ~900 MHz reported under BERT (the
model is still ~20% optimistic there); L4 predicted ~1,610 MHz of 2,040.

Pure arithmetic: no torch, no I/O (the reference cards are read from the catalog once).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from advisor.catalog import GpuSpec
from advisor.estimator.efficiency import arch_key

#: PCI Express CEM specification: an x16 slot supplies up to 75 W; cards at or under it have no power connector.
SLOT_POWER_W = 75.0
#: P ~ f^k between the voltage-tracking range (k = 3) and the voltage floor (k = 1); see the module docstring.
POWER_EXPONENT = 2.0
#: Architecture key -> catalog id of a full-power card of that architecture whose TDP sets the watts per SM
#: per GHz at boost.  Chosen as the datacenter/workstation part built on the largest die of the architecture.
REFERENCE: dict[str, str] = {
    "turing": "quadro-rtx-6000",   # TU102, 295 W, 72 SMs, 1,770 MHz
    "ada": "l40s",                 # AD102, 350 W, 142 SMs, 2,520 MHz
    "ampere": "rtx-a6000",         # GA102, 300 W, 84 SMs, 1,800 MHz (the GA10x parts: A10, A2, laptops)
    "pascal": "p100-sxm2-16gb",    # GP100, 300 W
    "volta": "v100-sxm2-16gb",     # GV100, 300 W
    "hopper": "h100-sxm5-80gb",    # GH100, 700 W
    "blackwell": "rtx-pro-6000-blackwell",  # GB202, 600 W
}
SOURCE = ("power cap model: watts a die needs at boost = architecture's W per SM per GHz (from a full-power "
          "reference card) x SMs x boost GHz; clock falls as sqrt(TDP / needed) (P ~ C V^2 f near the voltage "
          "floor), not below the datasheet base clock; applied to slot-powered (<= 75 W, PCIe CEM) and laptop "
          "parts; checked against T4 ~900 MHz under BERT (mlcommons/inference_results_v0.5 issue #20)")


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
def _density(key: str) -> tuple[float, str] | None:
    """Watts per SM per GHz at boost of the architecture's reference card, and the card's id."""
    ref_id = REFERENCE.get(key)
    if ref_id is None:
        return None
    from advisor.catalog import load_specs

    ref = next((s for s in load_specs() if s.id == ref_id), None)
    if ref is None or not ref.sm_count or not ref.boost_clock_mhz:
        return None
    return ref.tdp_w / (ref.sm_count * ref.boost_clock_mhz / 1000.0), ref_id


def sustained_clock(spec: GpuSpec) -> SustainedClock:
    """The fraction of the boost clock ``spec`` sustains under a long dense GEMM at its power cap."""
    boost = spec.boost_clock_mhz
    if not boost:
        return SustainedClock(1.0, None, "no boost clock in the catalog: spec-sheet rates taken as sustained")
    if spec.segment == "edge":
        return SustainedClock(1.0, boost, f"edge module: {boost:.0f} MHz is the power mode's GPU clock cap "
                                          f"(nvpmodel) at {spec.tdp_w:.0f} W, taken as held")
    if not power_limited(spec):
        return SustainedClock(1.0, boost, f"boost clock {boost:.0f} MHz taken as held at the full "
                                          f"{spec.tdp_w:.0f} W TDP (not a slot-powered or laptop part)")
    ref = _density(arch_key(spec.architecture, spec.segment))
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
