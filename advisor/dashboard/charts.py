"""Every chart of the dashboard, and the one palette they share.

Functions take the tables that ``advisor.dashboard_data`` builds and return Altair charts; the
pages only place them.  Colours come from ``PALETTE``: a segment (or a memory category, a
collective, ...) has the same colour on every page, and the scales name their domain explicitly so
that a filter that hides a segment does not shift the colours of the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import altair as alt

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), then two greys.
_BASE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
         "#999999", "#666666")

#: The app's palette: one colour per value, the same on every chart that shows that value.
PALETTE: dict[str, dict[str, str]] = {
    "segment": {"datacenter": _BASE[0], "workstation": _BASE[1], "geforce": _BASE[2], "instinct": _BASE[5],
                "radeon": _BASE[3], "edge": _BASE[4]},
    "vendor": {"nvidia": _BASE[2], "amd": _BASE[5], "intel": _BASE[0]},
    "memory": {"weights": _BASE[0], "gradients": _BASE[4], "optimizer": _BASE[1], "activations": _BASE[2],
               "kv_cache": _BASE[3], "overhead": _BASE[8], "quantization": _BASE[6]},
    "unit": {"TFLOP/s": _BASE[0], "GB/s": _BASE[1]},
    # the estimate's evidence level (advisor.estimator.uncertainty): narrow to wide range, dark to light
    "evidence": {"calibrated": _BASE[7], "measured": _BASE[0], "literature": _BASE[1], "inherited": _BASE[5]},
}
#: Colour of a card's capacity mark (not used by any category above).
CAPACITY_COLOR = "#B00020"
#: Colour of the fleet's straggler mark: a light red, readable on viridis' dark end, where a straggler's cell is.
SLOW_COLOR = "#FF7B7B"
#: How many points of a scatter carry a text label (the best-ranked ones); the rest show their name on hover.
TOP_LABELS = 6


def color(field: str, kind: str, title: str, values: Sequence[str] = ()) -> alt.Color:
    """A colour encoding on ``field`` from the app palette ``kind``; values it does not name get greys.

    Args:
        field: the column, e.g. ``"segment"``.
        kind: a key of ``PALETTE``; an unknown kind takes the base colours in order.
        values: the values present (for ones the palette lacks), in order of appearance.
    """
    known = PALETTE.get(kind, {})
    domain = list(known)
    extra = [v for v in dict.fromkeys(values) if v not in known and v is not None]
    spare = [c for c in _BASE if c not in known.values()] or list(_BASE)
    rng = list(known.values()) + [spare[i % len(spare)] for i in range(len(extra))]
    return alt.Color(f"{field}:N", title=title, scale=alt.Scale(domain=domain + extra, range=rng))


def _series_color(field: str, title: str, values: Sequence[str]) -> alt.Color:
    """Colours for series that have no fixed meaning (kernels, devices): the base colours in order."""
    values = list(dict.fromkeys(values))
    return alt.Color(f"{field}:N", title=title,
                     scale=alt.Scale(domain=values, range=[_BASE[i % len(_BASE)] for i in range(len(values))]))


# ---------------------------------------------------------------- specs explorer

_SPEC_TOOLTIP = ("name", "segment")


def _spec_tooltip(*extra: alt.Tooltip) -> list[Any]:
    return [*_SPEC_TOOLTIP, alt.Tooltip("peak_tflops:Q", title="peak (TFLOP/s)", format=".1f"),
            alt.Tooltip("peak_precision:N", title="precision"),
            alt.Tooltip("memory_bandwidth_gbs:Q", title="bandwidth (GB/s)"),
            alt.Tooltip("memory_gb:Q", title="memory (GB)"),
            alt.Tooltip("price_usd:Q", title="price (USD)", format=",.0f"),
            alt.Tooltip("tdp_w:Q", title="power (W)"), *extra]


def _title(text: str) -> alt.TitleParams:
    # Anchored left with its own padding: a centred title over a half-width chart gets clipped.
    return alt.TitleParams(text, anchor="start", offset=8)


def spec_scatter(frame: pd.DataFrame, x: str, x_title: str, y: str, y_title: str, title: str) -> alt.Chart:
    """One card per point, coloured by segment (the app palette), name and figures on hover.

    An axis whose values span more than 20x is logarithmic, so one 40,000-USD card does not squash the rest.
    """
    return (alt.Chart(frame, title=_title(title)).mark_circle(size=110, opacity=0.85)
            .encode(x=alt.X(f"{x}:Q", title=x_title, scale=_spread_scale(frame[x].dropna())),
                    y=alt.Y(f"{y}:Q", title=y_title, scale=_spread_scale(frame[y].dropna())),
                    color=color("segment", "segment", "segment", list(frame["segment"])),
                    tooltip=_spec_tooltip(alt.Tooltip(f"{x}:Q", title=x_title, format=",.3g"),
                                          alt.Tooltip(f"{y}:Q", title=y_title, format=",.3g")))
            .properties(height=320))


# ---------------------------------------------------------------- recommender

def memory_bars(memory: pd.DataFrame) -> alt.LayerChart:
    """Stacked peak memory per card by category, with the card's capacity as a mark centred on its bar."""
    order = list(dict.fromkeys(memory["card"]))
    y = alt.Y("card:N", title=None, sort=order, axis=alt.Axis(labelLimit=220))
    bars = (alt.Chart(memory).mark_bar()
            .encode(x=alt.X("gib:Q", title="memory per GPU (GiB)", stack="zero"), y=y,
                    color=color("category", "memory", "category", list(memory["category"])),
                    order=alt.Order("category:N"),
                    tooltip=["card", "category", alt.Tooltip("label:N", title="size")]))
    caps = (alt.Chart(memory.drop_duplicates("card").dropna(subset=["capacity_gib"]))
            # bandPosition 0.5: the tick sits on the middle of the card's row, like the bar, not on its edge.
            .mark_tick(color=CAPACITY_COLOR, thickness=3, size=22)
            .encode(x="capacity_gib:Q", y=alt.Y("card:N", sort=order, bandPosition=0.5),
                    tooltip=["card", alt.Tooltip("capacity_gib:Q", title="capacity (GiB)", format=".1f")]))
    # a few bars cannot hold a vertical legend of every category: the legend goes below the bars, in rows
    return (alt.layer(bars, caps).properties(height=alt.Step(26))
            .configure_legend(orient="bottom", columns=4, labelLimit=260, title=None))


def time_cost(points: pd.DataFrame, cost: str, cost_title: str, title: str,
              time_words: str = "time to train") -> alt.LayerChart:
    """The job's time (``time_words``: to train, or to serve) vs one kind of cost, a point per ranked row.

    The best ``TOP_LABELS`` rows are labelled; every point names its card on hover.

    Args:
        points: ``rank``, ``card``, ``segment``, ``hours`` and the ``cost`` column.
        cost: the cost column to chart (cloud rental for this job, or the purchase price of the cards).
    """
    shown = points.dropna(subset=[cost]).sort_values("rank")
    shown = shown.assign(order=range(1, len(shown) + 1))  # label the best rows of this chart, not of the ranking
    tooltip = ["card", "rank", "segment", alt.Tooltip("hours:Q", title=f"{time_words} (h)", format=",.3g"),
               alt.Tooltip(f"{cost}:Q", title=cost_title, format="$,.2f")]
    if "step_range" in shown:  # the step's low..high range and the evidence it rests on
        tooltip.append(alt.Tooltip("step_range:N", title="step range (evidence)"))
    base = alt.Chart(shown, title=_title(title)).encode(
        x=alt.X("hours:Q", title=f"{time_words} (hours)", scale=_spread_scale(shown["hours"])),
        y=alt.Y(f"{cost}:Q", title=cost_title, scale=_spread_scale(shown[cost])))
    dots = base.mark_circle(size=110, opacity=0.85).encode(
        color=color("segment", "segment", "segment", list(shown["segment"])), tooltip=tooltip)
    # rows whose labels would land on one another (closer than about a label's height: 1/12 of the y axis, and
    # 1/40 of the x axis, on each axis' own linear or log scale) share one label, "card (+N)", the best row's;
    # ties on time are common: one data loader caps every fast card
    top = shown[shown["order"] <= TOP_LABELS]

    def position(values: pd.Series, every: pd.Series) -> pd.Series:
        log = _spread_scale(every).to_dict().get("type") == "log"
        v, all_v = (values.map(math.log10), every.map(math.log10)) if log else (values, every)
        span = float(all_v.max() - all_v.min()) or 1.0
        return (v - float(all_v.min())) / span

    xs, ys = position(top["hours"], shown["hours"]), position(top[cost], shown[cost])
    kept: list[list[Any]] = []  # [x, y, card, extra], in rank order: the best row of a cluster names it
    for card, x, y in zip(top["card"], xs, ys, strict=True):
        near = next((k for k in kept if abs(k[0] - x) < 1 / 40 and abs(k[1] - y) < 1 / 12), None)
        if near is None:
            kept.append([x, y, card, 0])
        else:
            near[3] += 1
    names = {k[2]: k[2] + (f" (+{k[3]})" if k[3] else "") for k in kept}
    firsts = top[top["card"].isin(names)].assign(label=lambda f: f["card"].map(names))
    labels = (alt.Chart(firsts).mark_text(align="left", dx=8, dy=-6, fontSize=11)
              .encode(x="hours:Q", y=f"{cost}:Q", text="label:N"))
    return alt.layer(dots, labels).properties(height=320)


def step_ranges(ranges: pd.DataFrame, title: str) -> alt.LayerChart:
    """Each row's step time (dot) with its low..high range (line), coloured by evidence, best row first.

    A grey band marks the best row's range: a row whose line reaches into it is "within the uncertainty" of the
    best (the rule itself is ``Recommendation.uncertainty``; this only draws the ranges it compares).

    Args:
        ranges: ``dashboard_data.step_range_record`` rows: ``rank``, ``card``, ``step_s``, ``step_s_low``,
            ``step_s_high``, ``evidence``, ``profile``.
    """
    shown = ranges.sort_values("rank")
    order = list(dict.fromkeys(shown["card"]))
    every = _values(shown, ("step_s_low", "step_s", "step_s_high"))
    x_scale = _spread_scale(every)
    y = alt.Y("card:N", title=None, sort=order, axis=alt.Axis(labelLimit=220))
    colour = color("evidence", "evidence", "evidence", list(shown["evidence"]))
    tooltip = ["card", "rank", alt.Tooltip("evidence:N", title="evidence"), alt.Tooltip("profile:N", title="profile"),
               alt.Tooltip("step_s:Q", title="step (s)", format=".3g"),
               alt.Tooltip("step_s_low:Q", title="low (s)", format=".3g"),
               alt.Tooltip("step_s_high:Q", title="high (s)", format=".3g")]
    base = alt.Chart(shown)
    layers: list[Any] = []
    best = shown.head(1)
    if len(shown) > 1:
        layers.append(alt.Chart(best).mark_rect(color="#999999", opacity=0.18)
                      .encode(x="step_s_low:Q", x2="step_s_high:Q",
                              tooltip=[alt.Tooltip("card:N", title="best row"),
                                       alt.Tooltip("step_s_low:Q", title="its low (s)", format=".3g"),
                                       alt.Tooltip("step_s_high:Q", title="its high (s)", format=".3g")]))
    layers += [
        base.mark_rule(strokeWidth=3, opacity=0.75)
        .encode(x=alt.X("step_s_low:Q", title="step time (s): low .. high, dot = estimate", scale=x_scale),
                x2="step_s_high:Q", y=y, color=colour, tooltip=tooltip),
        base.mark_point(filled=True, size=80, opacity=1)
        .encode(x="step_s:Q", y=y, color=colour, tooltip=tooltip),
    ]
    return (alt.layer(*layers, title=_title(title)).properties(height=alt.Step(24))
            .configure_legend(orient="bottom", title=None))


def _values(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Every value of ``columns`` in one series (what an axis that shows all of them must cover)."""
    import pandas as pd

    return pd.concat([frame[c] for c in columns], ignore_index=True).dropna()


def _spread_scale(values: pd.Series) -> alt.Scale:
    """A log scale when the values span more than 20x (a 500-USD card and a 30,000-USD one), else linear."""
    positive = values[values > 0]
    if len(positive) == len(values) and len(values) > 1 and positive.max() / positive.min() > 20:
        return alt.Scale(type="log", nice=True)
    return alt.Scale(zero=False, nice=True)


# ---------------------------------------------------------------- my machine

def live_lines(frame: pd.DataFrame) -> alt.FacetChart:
    """One small chart per counter (utilisation, memory, power, ...), a line per device."""
    return (alt.Chart(frame).mark_line(point=True)
            .encode(x=alt.X("t_s:Q", title="time since page opened (s)"), y=alt.Y("value:Q", title=None),
                    color=_series_color("device", "device", list(frame["device"])),
                    tooltip=["device", "metric", alt.Tooltip("value:Q", format=".1f"), "t_s"])
            .properties(height=150, width=260)
            .facet(facet=alt.Facet("metric:N", title=None), columns=3)
            .resolve_scale(y="independent")
            .configure_legend(orient="bottom"))


def efficiency_bars(kernels: pd.DataFrame) -> alt.Chart:
    """Achieved / spec peak per kernel, coloured by unit."""
    return (alt.Chart(kernels).mark_bar()
            .encode(x=alt.X("efficiency_pct:Q", title="achieved / spec peak (%)", scale=alt.Scale(domain=[0, 110])),
                    y=alt.Y("label:N", title=None, sort="-x"),
                    color=color("unit", "unit", "unit", list(kernels["unit"])), tooltip=_kernel_tooltip()))


def achieved_bars(group: pd.DataFrame, unit: str) -> alt.Chart:
    """Achieved values of kernels without a spec peak (a CPU), one unit per chart."""
    return (alt.Chart(group).mark_bar()
            .encode(x=alt.X("achieved:Q", title=f"achieved ({unit})"), y=alt.Y("label:N", title=None),
                    color=_series_color("device", "device", list(group["device"])), tooltip=_kernel_tooltip())
            .properties(height=alt.Step(22)))


def _kernel_tooltip() -> list[Any]:
    return ["device", "kernel", "precision", alt.Tooltip("achieved:Q", format=".3g"),
            alt.Tooltip("spec:Q", format=".3g"), "unit"]


def roofline(lines: pd.DataFrame, points: pd.DataFrame) -> alt.LayerChart:
    """Spec roofs per precision (log-log) with the measured matmul points."""
    layers: list[Any] = [
        alt.Chart(lines).mark_line()
        .encode(x=alt.X("intensity:Q", title="arithmetic intensity (FLOP/byte)", scale=alt.Scale(type="log")),
                y=alt.Y("tflops:Q", title="throughput (TFLOP/s)", scale=alt.Scale(type="log")),
                color=_series_color("roof", "spec roof", list(lines["roof"])))]
    if not points.empty:
        layers.append(alt.Chart(points).mark_point(size=90, filled=True, color="black")
                      .encode(x="intensity:Q", y="tflops:Q",
                              tooltip=["kernel", "precision", alt.Tooltip("tflops:Q", format=".1f"),
                                       alt.Tooltip("intensity:Q", format=".1f")]))
    return alt.layer(*layers)


# ---------------------------------------------------------------- history and fleet

def history_trends(trend: pd.DataFrame) -> alt.FacetChart:
    """Best achieved value per kernel over time, one row of charts per unit."""
    return (alt.Chart(trend).mark_line(point=True)
            .encode(x=alt.X("time:T", title="probe time"), y=alt.Y("achieved:Q", title="achieved"),
                    color=_series_color("series", "kernel / precision", list(trend["series"])), detail="device:N",
                    tooltip=["device", "series", alt.Tooltip("achieved:Q", format=".4g"), "time:T"])
            .properties(height=220)
            .facet(row=alt.Row("unit:N", title="unit"))
            .resolve_scale(y="independent"))


def collectives_lines(coll: pd.DataFrame) -> alt.Chart:
    """Bus bandwidth per collective vs message size.

    The y scale covers every point (clip=True keeps lines inside the plot).
    """
    top = float(coll["busbw_gbs"].max()) if not coll.empty else 1.0
    return (alt.Chart(coll).mark_line(point=True, clip=True)
            .encode(x=alt.X("size_bytes:Q", title="message size (bytes)", scale=alt.Scale(type="log"),
                            axis=alt.Axis(format="~s")),
                    y=alt.Y("busbw_gbs:Q", title="bus bandwidth (GB/s)",
                            scale=alt.Scale(domain=[0, top * 1.1], nice=True)),
                    color=_series_color("op", "collective", list(coll["op"])),
                    tooltip=["op", "size", alt.Tooltip("busbw_gbs:Q", format=".2f"),
                             alt.Tooltip("link_gbs:Q", title="link spec (GB/s)"),
                             alt.Tooltip("fraction_pct:Q", title="% of link", format=".0f")]))


def fleet_heatmap(shown: pd.DataFrame) -> alt.LayerChart:
    """Per-node, per-GPU cells of one measurement, the value written in each, stragglers marked."""
    heat = (alt.Chart(shown).mark_rect()
            .encode(x=alt.X("gpu:O", title="GPU index", axis=alt.Axis(labelAngle=0)), y=alt.Y("node:N", title="node"),
                    color=alt.Color("value:Q", title=shown["unit"].iloc[0], scale=alt.Scale(scheme="viridis")),
                    tooltip=["node", "gpu", "name", alt.Tooltip("value:Q", format=".1f"), "unit",
                             alt.Tooltip("vs_median_pct:Q", title="vs fleet median (%)", format="+.1f")]))
    marks = (alt.Chart(shown[shown["straggler"]]).mark_text(text="▼ slow", color=SLOW_COLOR, fontWeight="bold",
                                                             dy=14)
             .encode(x="gpu:O", y="node:N"))
    # viridis runs from dark purple to light yellow: white text on the darker half of the scale, black on the lighter
    light = shown["value"] > (float(shown["value"].min()) + float(shown["value"].max())) / 2
    values = [alt.Chart(part).mark_text(fontSize=13, color=ink)
              .encode(x="gpu:O", y="node:N", text=alt.Text("value:Q", format=".4g"))
              for part, ink in ((shown[light], "black"), (shown[~light], "white")) if not part.empty]
    # a fixed height per node row: the value and the straggler mark (14 px below it) both stay inside the cell
    return alt.layer(heat, *values, marks).properties(height=alt.Step(52))
