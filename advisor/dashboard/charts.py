"""Every chart of the dashboard, and the one palette they share.

Functions take the tables that ``advisor.dashboard_data`` builds and return Altair charts; the
pages only place them.  Colours come from ``PALETTE``: a segment (or a memory category, a
collective, ...) has the same colour on every page, and the scales name their domain explicitly so
that a filter that hides a segment does not shift the colours of the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

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
    # the categories a user can act on (advisor.estimator.memory.CATEGORY_ADVICE, as `estimate` prints them), in
    # stacking order; then the coarse split of MemoryEstimate.breakdown_bytes
    "memory": {"weights": _BASE[0], "gradients": _BASE[4], "optimizer states": _BASE[1],
               "activations saved for backward": _BASE[2], "16-bit weight copies (autocast cache)": _BASE[6],
               "logits, loss and other step temporaries": _BASE[5], "KV cache": _BASE[3],
               "CUDA context and kernels": _BASE[9], "library workspaces": _BASE[7],
               "allocator reserve (fragmentation)": _BASE[8],
               "optimizer": _BASE[1], "activations": _BASE[2], "kv_cache": _BASE[3], "overhead": _BASE[8],
               "quantization": _BASE[6]},
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
#: A label's character width at font size 11, and the x axis of one of two charts side by side at 1400 px: what
#: decides whether two labels overlap.
LABEL_CHAR_PX = 6.0
LABEL_AXIS_PX = 420.0
TIME_COST_HEIGHT = 460  # with autosize "fit" the title, axes and legend come out of it


#: What ``st.altair_chart`` draws.
TopChart = (alt.Chart | alt.LayerChart | alt.FacetChart | alt.ConcatChart | alt.HConcatChart | alt.VConcatChart
            | alt.RepeatChart)


def _top(chart: Any) -> TopChart:
    """``chart`` as what it is: Altair's chained methods are typed ``Any``, or wider than the chart they return."""
    return cast(TopChart, chart)


def color(field: str, kind: str, title: str, values: Sequence[str] = (), present_only: bool = False) -> alt.Color:
    """A colour encoding on ``field`` from the app palette ``kind``; values it does not name get greys.

    Args:
        field: the column, e.g. ``"segment"``.
        kind: a key of ``PALETTE``; an unknown kind takes the base colours in order.
        values: the values present (for ones the palette lacks), in order of appearance.
        present_only: the legend lists only ``values`` (each still in its palette colour), not the whole palette.
    """
    known = PALETTE.get(kind, {})
    if present_only:
        known = {k: c for k, c in known.items() if k in set(values)}
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


def spec_scatter(frame: pd.DataFrame, x: str, x_title: str, y: str, y_title: str, title: str) -> TopChart:
    """One card per point, coloured by segment (the app palette), name and figures on hover.

    An axis whose values span more than 20x is logarithmic, so one 40,000-USD card does not squash the rest.
    """
    return _top(alt.Chart(frame, title=_title(title)).mark_circle(size=110, opacity=0.85)
            .encode(x=alt.X(f"{x}:Q", title=x_title, scale=_spread_scale(frame[x].dropna()),
                            axis=_spread_axis(frame[x].dropna())),
                    y=alt.Y(f"{y}:Q", title=y_title, scale=_spread_scale(frame[y].dropna()),
                            axis=_spread_axis(frame[y].dropna())),
                    color=color("segment", "segment", "segment", list(frame["segment"])),
                    tooltip=_spec_tooltip(alt.Tooltip(f"{x}:Q", title=x_title, format=",.3g"),
                                          alt.Tooltip(f"{y}:Q", title=y_title, format=",.3g"),
                                          # whose price and when ("street, 2025-06"), where the frame says
                                          *([alt.Tooltip("price_note:N", title="price (kind, date)")]
                                            if "price_note" in frame else [])))
            .properties(height=320))


# ---------------------------------------------------------------- recommender

def memory_bars(memory: pd.DataFrame) -> TopChart:
    """Stacked peak memory per card by category, with the card's capacity as a mark centred on its bar."""
    order = list(dict.fromkeys(memory["card"]))
    y = alt.Y("card:N", title=None, sort=order, axis=alt.Axis(labelLimit=320))
    # stacked as the palette lists them (model states first, fixed costs last), not alphabetically
    stacking = {c: i for i, c in enumerate(PALETTE["memory"])}
    memory = memory.assign(stack=[stacking.get(c, len(stacking)) for c in memory["category"]])
    bars = (alt.Chart(memory).mark_bar()
            .encode(x=alt.X("gib:Q", title="memory per GPU (GiB)", stack="zero"), y=y,
                    color=color("category", "memory", "category", list(memory["category"]), present_only=True),
                    order=alt.Order("stack:Q"),
                    tooltip=["card", "category", alt.Tooltip("label:N", title="size")]))
    caps = (alt.Chart(memory.drop_duplicates("card").dropna(subset=["capacity_gib"]))
            # bandPosition 0.5: the tick sits on the middle of the card's row, like the bar, not on its edge.
            .mark_tick(color=CAPACITY_COLOR, thickness=3, size=22)
            .encode(x="capacity_gib:Q", y=alt.Y("card:N", sort=order, bandPosition=0.5),
                    tooltip=["card", alt.Tooltip("capacity_gib:Q", title="capacity (GiB)", format=".1f")]))
    # a few bars cannot hold a vertical legend of every category: the legend goes below the bars, in rows
    return _top(alt.layer(bars, caps).properties(height=alt.Step(26))
            .configure_legend(orient="bottom", columns=3, labelLimit=300, title=None))


def time_cost(points: pd.DataFrame, cost: str, cost_title: str, title: str,
              time_words: str = "time to train") -> TopChart:
    """The job's time (``time_words``: to train, or to serve) vs one kind of cost, a point per ranked row.

    The best ``TOP_LABELS`` rows are labelled; every point names its card on hover.

    Args:
        points: ``rank``, ``card``, ``segment``, ``hours`` and the ``cost`` column (``{cost}_price``, when given:
            the price's class or kind and date, shown on hover).
        cost: the cost column to chart (cloud rental for this job, or the purchase price of the cards).
    """
    shown = points.dropna(subset=[cost]).sort_values("rank")
    shown = shown.assign(order=range(1, len(shown) + 1))  # label the best rows of this chart, not of the ranking
    tooltip = ["card", "rank", "segment", alt.Tooltip("hours:Q", title=f"{time_words} (h)", format=",.3g"),
               alt.Tooltip(f"{cost}:Q", title=cost_title, format="$,.2f")]
    if "step_range" in shown:  # the step's low..high range and the evidence it rests on
        tooltip.append(alt.Tooltip("step_range:N", title="step range (evidence)"))
    if f"{cost}_price" in shown:  # whose price, and when it was read ("gpu cloud, 2025-05", "street, 2025-06")
        tooltip.append(alt.Tooltip(f"{cost}_price:N", title="price (kind, date)"))
    base = alt.Chart(shown, title=_title(title)).encode(
        x=alt.X("hours:Q", title=f"{time_words} (hours)", scale=_spread_scale(shown["hours"]),
                axis=_spread_axis(shown["hours"])),
        y=alt.Y(f"{cost}:Q", title=cost_title, scale=_spread_scale(shown[cost]),
                axis=_spread_axis(shown[cost])))
    dots = base.mark_circle(size=110, opacity=0.85).encode(
        color=color("segment", "segment", "segment", list(shown["segment"])), tooltip=tooltip)
    # rows whose labels would land on one another share one label, "card (+N)", the best row's: labels closer than
    # about a label's height (1/12 of the y axis) whose texts, drawn rightwards from their points, overlap (a
    # label's width as a share of the x axis, on each axis' own linear or log scale); ties on time are common: one
    # data loader caps every fast card
    top = shown[shown["order"] <= TOP_LABELS]

    def position(values: pd.Series, every: pd.Series) -> pd.Series:
        log = _spread_scale(every).to_dict().get("type") == "log"
        v, all_v = (values.map(math.log10), every.map(math.log10)) if log else (values, every)
        span = float(all_v.max() - all_v.min()) or 1.0
        return (v - float(all_v.min())) / span

    xs, ys = position(top["hours"], shown["hours"]), position(top[cost], shown[cost])
    kept: list[list[Any]] = []  # [x, y, card, extra], in rank order: the best row of a cluster names it
    for card, x, y in zip(top["card"], xs, ys, strict=True):
        near = next((k for k in kept if abs(k[1] - y) < 1 / 12
                     and x < k[0] + _label_span(k[2]) and k[0] < x + _label_span(card)), None)
        if near is None:
            kept.append([x, y, card, 0])
        else:
            near[3] += 1
    names = {k[2]: k[2] + (f" (+{k[3]})" if k[3] else "") for k in kept}
    firsts = top[top["card"].isin(names)].assign(label=lambda f: f["card"].map(names))
    labels = (alt.Chart(firsts).mark_text(align="left", dx=8, dy=-6, fontSize=11)
              .encode(x="hours:Q", y=f"{cost}:Q", text="label:N"))
    # the legend below the plot: two charts side by side leave each too narrow for a legend beside it; the height
    # holds the plot (about 300 px: a label's 1/12 of the y axis is then more than its text's height) and the legend
    return _top(alt.layer(dots, labels).properties(height=TIME_COST_HEIGHT)
                .configure_legend(orient="bottom", columns=3, title=None))


def _label_span(card: str) -> float:
    """How much of a time vs cost chart's x axis a point's label takes: its text and a " (+N)" suffix."""
    return (len(card) + 5) * LABEL_CHAR_PX / LABEL_AXIS_PX


def step_ranges(ranges: pd.DataFrame, title: str) -> TopChart:
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
    y = alt.Y("card:N", title=None, sort=order, axis=alt.Axis(labelLimit=320))
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
    return _top(alt.layer(*layers, title=_title(title)).properties(height=alt.Step(24))
            .configure_legend(orient="bottom", title=None))


def _values(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Every value of ``columns`` in one series (what an axis that shows all of them must cover)."""
    import pandas as pd

    return pd.concat([frame[c] for c in columns], ignore_index=True).dropna()


def _spread_axis(values: pd.Series, explicit: bool = True) -> alt.Axis:
    """The axis of a ``_spread_scale``: on a log scale, ticks and grid lines at 1 and 3 times each power of ten.

    Left to itself Vega draws a grid line at every 2..9 multiple of each decade, a mesh, and labels an uneven few
    (10, 30, 200, 1,000). Over 4+ decades only the powers of ten.  ``explicit=False`` (a faceted chart whose rows
    have their own domains) only thins the ticks.
    """
    if _spread_scale(values).to_dict().get("type") != "log":
        return alt.Axis()
    positive = values[values > 0]
    lo, hi = math.floor(math.log10(float(positive.min()))), math.ceil(math.log10(float(positive.max())))
    if not explicit:
        return alt.Axis(tickCount=max(2, hi - lo - 1)) if hi - lo >= 3 else alt.Axis()
    steps = (1,) if hi - lo >= 4 else (1, 3)
    # the scale's nice domain runs from 10**lo to 10**hi: every value here lies on it
    return alt.Axis(values=[float(f"{m}e{k}") for k in range(lo, hi + 1) for m in steps if m == 1 or k < hi])


def _spread_scale(values: pd.Series) -> alt.Scale:
    """A log scale when the values span more than 20x (a 500-USD card and a 30,000-USD one), else linear."""
    positive = values[values > 0]
    if len(positive) == len(values) and len(values) > 1 and positive.max() / positive.min() > 20:
        return alt.Scale(type="log", nice=True)
    return alt.Scale(zero=False, nice=True)


# ---------------------------------------------------------------- my machine

def live_lines(frame: pd.DataFrame, gap_s: float | None = None) -> TopChart:
    """One small chart per counter (utilisation, memory, power, ...), a line per device.

    Args:
        gap_s: samples further apart than this (seconds) are not joined: a probe run pauses the refreshes, and a
            straight line across the pause would draw figures nobody measured.
    """
    frame = frame.sort_values("t_s")
    runs = frame.groupby(["device", "metric"])["t_s"].transform(lambda t: (t.diff() > gap_s).cumsum()) if gap_s \
        else 0
    frame = frame.assign(run=runs)
    return _top(alt.Chart(frame).mark_line(point=True)
            .encode(x=alt.X("t_s:Q", title="time since the first sample (s)", scale=alt.Scale(zero=False)),
                    y=alt.Y("value:Q", title=None),
                    color=_series_color("device", "device", list(frame["device"])), detail="run:N",
                    tooltip=["device", "metric", alt.Tooltip("value:Q", format=".1f"),
                             alt.Tooltip("t_s:Q", title="time (s)", format=".0f")])
            .properties(height=150, width=260)
            .facet(facet=alt.Facet("metric:N", title=None), columns=3)
            .resolve_scale(y="independent")
            .configure_legend(orient="bottom", labelLimit=0))  # a device's whole name: no "Intel(R) Xeon(R) P…"


def efficiency_bars(kernels: pd.DataFrame) -> TopChart:
    """Achieved / spec peak per kernel, coloured by unit."""
    return _top(alt.Chart(kernels).mark_bar()
            .encode(x=alt.X("efficiency_pct:Q", title="achieved / spec peak (%)", scale=alt.Scale(domain=[0, 110])),
                    y=alt.Y("label:N", title=None, sort="-x"),
                    color=color("unit", "unit", "unit", list(kernels["unit"])), tooltip=_kernel_tooltip()))


def achieved_bars(group: pd.DataFrame, unit: str) -> TopChart:
    """Achieved values of kernels without a spec peak (a CPU), one unit per chart."""
    return _top(alt.Chart(group).mark_bar()
            .encode(x=alt.X("achieved:Q", title=f"achieved ({unit})"), y=alt.Y("label:N", title=None),
                    color=_series_color("device", "device", list(group["device"])), tooltip=_kernel_tooltip())
            .properties(height=alt.Step(22))
            .configure_legend(orient="bottom", labelLimit=0))


def _kernel_tooltip() -> list[Any]:
    return ["device", "kernel", "precision", alt.Tooltip("achieved:Q", format=".3g"),
            alt.Tooltip("spec:Q", format=".3g"), "unit"]


def roofline(lines: pd.DataFrame, points: pd.DataFrame) -> TopChart:
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
    return _top(alt.layer(*layers))


# ---------------------------------------------------------------- history and fleet

def history_trends(trend: pd.DataFrame) -> TopChart:
    """Best achieved value per kernel over time, one row of charts per unit.

    A CPU's and a GPU's figures differ a thousandfold: an axis spanning more than 20x is logarithmic, so neither
    sits flat on zero.
    """
    return _top(alt.Chart(trend).mark_line(point=True)
            .encode(x=alt.X("time:T", title="probe time", axis=alt.Axis(format="%b %d", labelAngle=0)),
                    y=alt.Y("achieved:Q", title="achieved", scale=_spread_scale(trend["achieved"].dropna()),
                             axis=_spread_axis(trend["achieved"].dropna(), explicit=False)),
                    color=_series_color("series", "kernel / precision", list(trend["series"])), detail="device:N",
                    tooltip=["device", "series", alt.Tooltip("achieved:Q", format=".4g"),
                             alt.Tooltip("time:T", format="%Y-%m-%d %H:%M")])
            .properties(height=220, width=560)
            .facet(row=alt.Row("unit:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")))
            .resolve_scale(y="independent")
            .configure_legend(labelLimit=0))  # "collective_reduce_scatter (GB/s)" whole


def collectives_lines(coll: pd.DataFrame) -> TopChart:
    """Bus bandwidth per collective vs message size.

    The y scale covers every point (clip=True keeps lines inside the plot).
    """
    top = float(coll["busbw_gbs"].max()) if not coll.empty else 1.0
    return _top(alt.Chart(coll).mark_line(point=True, clip=True)
            .encode(x=alt.X("size_bytes:Q", title="message size (bytes)", scale=alt.Scale(type="log"),
                            axis=alt.Axis(format="~s")),
                    y=alt.Y("busbw_gbs:Q", title="bus bandwidth (GB/s)",
                            scale=alt.Scale(domain=[0, top * 1.1], nice=True)),
                    color=_series_color("op", "collective", list(coll["op"])),
                    tooltip=["op", "size", alt.Tooltip("busbw_gbs:Q", format=".2f"),
                             alt.Tooltip("link_gbs:Q", title="link spec (GB/s)"),
                             alt.Tooltip("fraction_pct:Q", title="% of link", format=".0f")]))


def fleet_heatmap(shown: pd.DataFrame) -> TopChart:
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
    return _top(alt.layer(heat, *values, marks).properties(height=alt.Step(52)))
