"""The recommender page's data: the form's options, an uploaded config, ranked cards, fit and memory views."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from advisor.units import GiB, format_bytes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def memory_breakdown_frame(estimates: Iterable[Any], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Long table for a stacked memory bar: card, category, GiB, capacity_gib.

    Args:
        estimates: ``Estimate`` objects or their ``to_dict()`` forms (DESIGN.md's estimate JSON),
            each with ``gpu.name``, ``memory.breakdown_bytes`` and the card's capacity in
            ``gpu.memory_bytes`` / ``gpu.memory_gb`` when given (else looked up by ``gpu.id``).
        labels: the bar label of each estimate (default: the card's name).
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for i, est in enumerate(estimates):
        d = est if isinstance(est, Mapping) else est.to_dict()
        gpu = d.get("gpu", {})
        card = labels[i] if labels is not None else (gpu.get("name") or gpu.get("id") or "?")
        capacity = d.get("memory", {}).get("capacity_bytes") or _capacity_bytes(gpu)
        for category, nbytes in (d.get("memory", {}).get("breakdown_bytes") or {}).items():
            rows.append({"card": card, "category": category, "gib": float(nbytes or 0) / GiB,
                         "label": format_bytes(nbytes),
                         "capacity_gib": capacity / GiB if capacity else math.nan})
    return pd.DataFrame(rows, columns=["card", "category", "gib", "label", "capacity_gib"])


def _capacity_bytes(gpu: Mapping[str, Any]) -> float | None:
    if gpu.get("memory_bytes"):
        return float(gpu["memory_bytes"])
    if gpu.get("memory_gb"):
        return float(gpu["memory_gb"]) * 1e9
    if gpu.get("id"):
        from advisor.catalog import get_gpu
        from advisor.errors import AdvisorError

        try:
            return get_gpu(gpu["id"]).memory_bytes
        except AdvisorError:  # an unknown id only loses the capacity line, not the chart
            return None
    return None

def parse_config_json(data: bytes, *, name: str = "config.json", max_bytes: int = 1024 * 1024) -> dict[str, Any]:
    """Validate an uploaded HF-style config.json: size-limited UTF-8 JSON holding an object.

    Never unpickles anything: only ``json.loads`` touches the bytes (through ``advisor.files``, as every user file).

    Raises:
        WorkloadError: too large, not UTF-8, not JSON, nested too deeply, or not a JSON object.
    """
    from advisor.errors import WorkloadError
    from advisor.files import parse_json_object, shown_path

    if len(data) > max_bytes:
        raise WorkloadError(f"{name} is {format_bytes(len(data))}; uploads are limited to {format_bytes(max_bytes)}",
                            hint="a model's config.json is a few KiB; upload the config, not the weights")
    return parse_json_object(data, name=f"the upload {shown_path(name)}", error=WorkloadError,
                             hint="upload a Hugging Face-style config.json: one JSON object of model hyper-parameters")


_VISION_WORDS = ("resnet", "vit", "convnext", "efficientnet", "vgg", "mobilenet", "unet", "densenet",
                 "regnet", "swin", "inception", "alexnet", "yolo", "detr", "clip-vision")


def _is_vision(model: Any) -> bool:
    """Whether ``model`` is a vision model (CNN, ViT).

    A config with an image size or channels, a preset of a vision family, else a name that says so.
    """
    if isinstance(model, Mapping):
        return "image_size" in model or "num_channels" in model
    from advisor.workload.presets import PRESETS

    preset = PRESETS.get(str(model))
    if preset is not None and preset.kind == "module":
        return preset.family in ("cnn", "vit")
    if preset is not None:
        return False
    return any(word in str(model).lower() for word in _VISION_WORDS)

def _num(value: Any, scale: float = 1.0) -> float:
    return math.nan if value is None else float(value) / scale


def _first(row: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` that the row has (the recommender's cost columns are being renamed)."""
    for name in names:
        if row.get(name) is not None:
            return row[name]
    return None


#: Cost columns of a recommend row, newest name first: the job's cloud rental, the cards' purchase price.
CLOUD_COST_KEYS = ("cost_cloud_usd", "cloud_cost_usd")
BUY_COST_KEYS = ("cost_buy_usd", "purchase_cost_usd")
BREAK_EVEN_KEYS = ("break_even_hours", "break_even_h")


def card_label(gpu_name: str, num_gpus: int) -> str:
    """``H100 SXM5 80GB`` for one card, ``4x H100 SXM5 80GB`` for several."""
    return gpu_name if num_gpus == 1 else f"{num_gpus}x {gpu_name}"


def recommendation_view(rec: Any) -> dict[str, Any]:
    """Everything the recommender page draws, as plain records (cacheable, JSON-safe).

    Args:
        rec: a ``Recommendation`` (``rows`` of candidates, ``rejected``, ``to_dict()``); each row's and
            each memory rejection's ``memory_breakdown_bytes`` feed the stacked memory bars.

    Returns ``{"ranked", "rejected", "time_cost", "step_ranges", "uncertainty", "memory", "raw", "assumptions",
    "partial", "job", "workload", "summary", "tie", "fit_options"}``: ranked rows (time to train, what limits it and
    the costs first) with units in the column names (cloud rental and purchase in separate columns, never mixed),
    rejected cards with their reasons, the time vs cost points (``cloud_usd`` and ``buy_usd`` apart), each row's
    step time with its low..high range and evidence (``step_range_record``), the recommendation's own "within the
    uncertainty" sentence (``Recommendation.uncertainty``, as the CLI prints it; ``None`` when the top ranges do not
    overlap), the memory bars' long table, and ``rec.to_dict()``.
    """
    raw = rec.to_dict()
    # "time to train", or "time to serve" for an inference job (advisor.ranking.JOB_TIME_WORDS, as the CLI says it)
    time_column = f"{raw.get('job', {}).get('time_words') or 'time to train'} (h)"
    ranked = []
    points = []
    ranges: list[dict[str, Any]] = []
    for r in raw.get("rows", []):
        label = card_label(r["gpu_name"], r["num_gpus"])
        cloud, buy = _first(r, *CLOUD_COST_KEYS), _first(r, *BUY_COST_KEYS)
        # what decides leads (time, what limits it, the costs), visible without scrolling; the detail follows
        ranked.append({
            "rank": r["rank"], "card": label,
            time_column: _num(r.get("time_to_train_s"), 3600), "limited by": r.get("limiter"),
            "cloud cost of the job (USD)": _num(cloud), "purchase cost of the cards (USD)": _num(buy),
            "segment": r.get("segment"),
            "parallelism": r.get("parallelism") or "single GPU", "batch per GPU": r.get("per_gpu_batch"),
            "memory per GPU (GiB)": _num(r.get("memory_per_gpu_bytes"), GiB),
            "headroom (GiB)": _num(r.get("headroom_bytes"), GiB),
            "step (s)": _num(r.get("step_s")), "step low (s)": _num(r.get("step_s_low")),
            "step high (s)": _num(r.get("step_s_high")), "evidence": r.get("evidence"),
            "samples/s": _num(r.get("effective_samples_per_s") or r.get("samples_per_s")),
            "GPU alone (samples/s)": _num(r.get("samples_per_s")),
            "tokens/s": _num(r.get("tokens_per_s")),
            "break-even (h)": _num(_first(r, *BREAK_EVEN_KEYS)),
            "energy (kWh)": _num(r.get("energy_kwh")), "bound": r.get("bound"),
            "cloud price": (f"{r.get('cloud_price_class') or 'on demand'}, {r.get('cloud_price_date')}"
                            if r.get("cloud_usd_per_hour") else None),
            "purchase price": (f"{r.get('price_kind') or 'price'}, {r.get('price_date')}"  # "not sold, 2026-06" too
                               if (r.get("price_usd") or r.get("price_kind")) and r.get("price_date") else None),
            "calibrated": bool(r.get("calibrated")),
        })
        points.append({"rank": r["rank"], "card": label, "segment": r.get("segment"),
                       "hours": r["time_to_train_s"] / 3600, "cloud_usd": _num(cloud), "buy_usd": _num(buy),
                       "evidence": r.get("evidence"), "step_range": step_range_label(r),
                       "cloud_usd_price": ranked[-1]["cloud price"], "buy_usd_price": ranked[-1]["purchase price"]})
        ranges.append(step_range_record(r, label))
    rejected = [{"card": x["gpu_name"], "GPUs": x["num_gpus"], "why": x["code"].replace("_", " "),
                 "reason": x["reason"]} for x in raw.get("rejected", [])]
    return {"ranked": ranked, "rejected": rejected, "time_cost": points, "step_ranges": ranges,
            "uncertainty": raw.get("uncertainty"),
            "memory": memory_breakdown_records(rec), "raw": raw,
            "assumptions": list(raw.get("assumptions", [])), "partial": raw.get("partial"),
            "job": raw.get("job", {}), "workload": workload_summary(raw.get("workload", {})),
            "summary": list(raw.get("summary", [])), "tie": raw.get("tie"),
            "fit_options": fit_option_records(getattr(rec, "fit_options", None))}


def step_range_record(row: Mapping[str, Any], label: str | None = None) -> dict[str, Any]:
    """One ranked row's step time and its range, for the range chart.

    Args:
        row: a candidate's ``to_dict()`` (``step_s``, ``step_s_low`` / ``step_s_high`` and ``evidence`` from
            ``advisor.estimator.uncertainty``, ``profile``).
        label: the card's label (default: ``card_label`` of the row).

    Returns ``{"rank", "card", "segment", "step_s", "step_s_low", "step_s_high", "evidence", "profile"}``; a row
    without a range gets its expected step time at both ends (drawn as a point only).
    """
    step = _num(row.get("step_s"))
    low, high = row.get("step_s_low"), row.get("step_s_high")
    profile = row.get("profile")
    return {"rank": row.get("rank"), "card": label or card_label(row["gpu_name"], row["num_gpus"]),
            "segment": row.get("segment"), "step_s": step,
            "step_s_low": step if low is None else float(low), "step_s_high": step if high is None else float(high),
            "evidence": row.get("evidence") or "unknown",
            "profile": profile.get("id") if isinstance(profile, Mapping) else profile}


def step_range_label(row: Mapping[str, Any]) -> str | None:
    """``"0.15-0.25 s (measured)"``: a row's step-time range and its evidence, for tooltips; ``None`` without one."""
    low, high = row.get("step_s_low"), row.get("step_s_high")
    if low is None or high is None:
        return None
    return f"{low:.3g}-{high:.3g} s ({row.get('evidence') or 'unknown'})"


def fit_option_records(advice: Any) -> list[dict[str, Any]]:
    """What would make a workload fit (``advisor.advice.FitAdvice``), smallest change first, as table rows.

    The same rows as the CLI's table under ``estimate`` / ``recommend``; empty when there is no advice.
    """
    if advice is None:
        return []
    return [{"change": o.change, "fits": ("yes" if o.fits else "no")
             + (" (more cards than Max GPUs)" if o.beyond_max_gpus else ""),
             "memory per GPU (GiB)": o.memory_per_gpu_bytes / GiB, "step (s)": o.step_s,
             "samples/s": o.effective_samples_per_s,
             "cloud (USD/h)": _num(o.cloud_usd_per_hour), "to buy (USD)": _num(o.price_usd),
             "settings": o.how} for o in advice.options]


def memory_breakdown_records(rec: Any, limit: int = 8) -> list[dict[str, Any]]:
    """Long table for the stacked memory bars, ``limit`` cards in all.

    The best-ranked row of each card, then cards rejected for memory at one GPU (from each row's
    ``memory_breakdown_bytes``).

    Records: card, category, gib, label, capacity_gib (usable memory per GPU when known, else the card's).
    """
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []

    def add(label: str, parts: Mapping[str, float] | None, capacity: float | None) -> None:
        for category, nbytes in (parts or {}).items():
            rows.append({"card": label, "category": category, "gib": float(nbytes or 0) / GiB,
                         "label": format_bytes(nbytes), "capacity_gib": capacity / GiB if capacity else math.nan})

    for r in rec.rows:
        if r.gpu_id in seen or len(seen) >= limit:
            continue
        seen.add(r.gpu_id)
        capacity = r.usable_per_gpu_bytes or _capacity_bytes({"id": r.gpu_id})
        add(card_label(r.gpu_name, r.num_gpus), getattr(r, "memory_breakdown_bytes", None), capacity)
    for x in rec.rejected:
        if x.gpu_id in seen or x.code != "does_not_fit" or x.num_gpus != 1 or len(seen) >= limit:
            continue
        seen.add(x.gpu_id)
        add(f"{x.gpu_name} (does not fit)", getattr(x, "memory_breakdown_bytes", None), x.available_bytes)
    return rows


def workload_summary(workload: Mapping[str, Any]) -> str:
    """``train, global batch 64, image 224, amp-bf16``: the parts that are set, comma-separated."""
    parts = [workload.get("mode")]
    if workload.get("batch_size") is not None:
        parts.append(f"global batch {workload['batch_size']}")
    if workload.get("seq_len"):
        parts.append(f"seq {workload['seq_len']}")
    elif workload.get("image_size"):
        parts.append(f"image {workload['image_size']}")
    parts += [workload.get("precision"), workload.get("optimizer")]
    return ", ".join(str(p) for p in parts if p)


def fit_view(rec: Any, card: str) -> dict[str, Any]:
    """Does the workload fit on one card: a ``recommend(..., gpus=[card], max_gpus=1)`` answer in words.

    Returns ``{"fits": bool | None, "card", "needed_bytes", "usable_bytes", "headroom_bytes", "message",
    "memory", "time", "options", "range"}`` (``options``: what would make it fit, ``fit_option_records``; ``fits``
    None when the card cannot run the workload at all, e.g. no such precision);
    ``time``: where a step's time goes when it fits (``time_breakdown_records``), else empty; ``range``: the step
    time with its low..high range and evidence when it fits (one ``step_range_record``), else empty.
    """
    row = next((r for r in rec.rows if r.num_gpus == 1), None)
    if row is not None:
        needed, usable = row.memory_per_gpu_bytes, row.usable_per_gpu_bytes
        return {"fits": True, "card": row.gpu_name, "needed_bytes": needed, "usable_bytes": usable,
                "headroom_bytes": row.headroom_bytes,
                "message": f"Fits on one {row.gpu_name}: needs {format_bytes(needed)} of "
                           f"{format_bytes(usable) if usable else 'its memory'}"
                           + (f", {format_bytes(row.headroom_bytes)} to spare" if row.headroom_bytes else "")
                           + f"; a step takes {row.step_s:.3g} s"
                           + (f" ({step_range_label(row.to_dict())})" if row.step_s_low is not None else "") + ".",
                "memory": memory_breakdown_records(rec, limit=1), "time": time_breakdown_records(row), "options": [],
                "range": [step_range_record(row.to_dict())]}
    miss = next((x for x in rec.rejected if x.num_gpus == 1), None)
    if miss is None:
        return {"fits": None, "card": card, "needed_bytes": None, "usable_bytes": None, "headroom_bytes": None,
                "message": f"No answer for {card}.", "memory": [], "time": [], "options": [], "range": []}
    fits = False if miss.code == "does_not_fit" else None
    return {"fits": fits, "card": miss.gpu_name, "needed_bytes": miss.needed_bytes,
            "usable_bytes": miss.available_bytes, "headroom_bytes": None,
            "message": f"{miss.gpu_name}: {miss.reason}." + (f" {rec.partial}." if rec.partial and fits is False
                                                             else ""),
            "memory": memory_breakdown_records(rec, limit=1), "time": [],
            "options": fit_option_records(getattr(rec, "fit_options", None)), "range": []}


def time_breakdown_records(row: Any) -> list[dict[str, Any]]:
    """Where one candidate's step time goes: ``[{"class", "ms", "share", "what would make it faster"}]``.

    Largest first, the classes that take time (``advisor.estimator.time.class_breakdown`` with the candidate's own
    advice); empty when the candidate carries no breakdown.
    """
    from advisor.estimator.time import class_breakdown

    by_class = getattr(row, "time_by_class_s", None) or {}
    return [{"class": name, "ms": sec * 1e3, "share": share, "what would make it faster": helps}
            for name, sec, share, helps in class_breakdown(by_class, row.step_s, getattr(row, "class_advice", None))]


def recommend_options(*, model: Any, batch_size: int, seq_len: int | None, image_size: int | None, precision: str,
                      optimizer: str, mode: str, gradient_checkpointing: bool, lora_rank: int | None,
                      max_gpus: int, objective: str, budget_usd: float | None,
                      runtime: str = "eager", gpus: Sequence[str] | None = None,
                      loader_samples_per_s: float | None = None, then: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``recommend(...)`` from the recommender's form.

    The form shows only the inputs that mean something for the model (``model_inputs``); this
    applies the same rule, so a hidden input never reaches ``recommend``: image size for vision
    models, sequence length, LoRA and checkpointing for language models; the optimizer only when
    training.  ``gpus``: keep only these cards (empty = all).  ``loader_samples_per_s``: the user's data
    loader rate (``None``: the stated assumption); ``then``: what orders ties (``None``: the default).
    ``runtime``: ``eager`` (PyTorch eager, host dispatch can bound small steps) or ``graph`` (CUDA graphs,
    vLLM, ...).
    """
    shown = model_inputs(model)
    options: dict[str, Any] = {"batch_size": batch_size, "precision": precision, "mode": mode,
                               "max_gpus": max_gpus, "objective": objective, "runtime": runtime}
    if "image_size" in shown:
        options["image_size"] = image_size
    if "seq_len" in shown:
        options["seq_len"] = seq_len
    if mode == "train":
        options["optimizer"] = optimizer
        if "gradient_checkpointing" in shown:
            options["gradient_checkpointing"] = gradient_checkpointing
        if lora_rank and "lora_rank" in shown:
            options["lora_rank"] = lora_rank
    if budget_usd:
        options["budget_usd"] = budget_usd
    if gpus:
        options["gpus"] = list(gpus)
    if loader_samples_per_s:
        options["loader_samples_per_s"] = float(loader_samples_per_s)
    if then:
        options["then"] = then
    from advisor.request import RecommendRequest

    RecommendRequest(model=model, **options)  # every key is one of recommend()'s: a misnamed one fails here
    return options


def default_image_size(model: Any, fallback: int = 224) -> int:
    """The image size a vision model was built for, else ``fallback`` pixels.

    It is the config's ``image_size`` (a preset's or an uploaded config's).
    """
    config: Any = model if isinstance(model, Mapping) else None
    if config is None:
        from advisor.workload import presets as _presets

        preset = getattr(_presets, "PRESETS", {}).get(model)
        config = getattr(preset, "config", None)
    size = config.get("image_size") if isinstance(config, Mapping) else None
    return int(size) if isinstance(size, int) and size > 0 else fallback


def model_inputs(model: Any) -> frozenset[str]:
    """Which of the recommender's model-specific inputs apply.

    ``image_size`` for vision models (CNN, ViT); ``seq_len``, ``lora_rank`` and ``gradient_checkpointing``
    for language models; ``seq_len`` alone for a config with no analytic model (``has_analytic_model``).
    """
    if _is_vision(model):
        return frozenset({"image_size"})
    if isinstance(model, Mapping) and not has_analytic_model(model):
        # built with transformers and traced: LoRA and checkpointing are the analytic builder's options only, so
        # offering them would make every such upload fail on them rather than on what really decides
        return frozenset({"seq_len"})
    return frozenset({"seq_len", "lora_rank", "gradient_checkpointing"})


def has_analytic_model(config: Mapping[str, Any]) -> bool:
    """Whether a config's ``model_type`` has a closed-form model (``advisor.workload.config.MODEL_TYPES``).

    Any other model type is built with transformers and traced, when transformers is installed.
    """
    from advisor.workload.config import MODEL_TYPES

    model_type = config.get("model_type")
    return isinstance(model_type, str) and model_type in MODEL_TYPES
