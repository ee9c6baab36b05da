"""Traces shipped inside the package: each traced preset at its default shape, so a first run needs no trace.

Tracing a preset costs seconds (importing torch, two fake-tensor passes); a new user's first ``estimate`` of
resnet50 paid them.  The raw traces the presets are built from (``trace_presets.trace_pair``: the two traced
batches and the model's facts) are plain data, so they ship under ``advisor/workload/traces/`` for every traced
preset at its default image size / sequence length, in both modes and at every precision that traces
differently (``TRACE_PRECISIONS``; tf32, fp8, int8 and int4 trace as fp32), without gradient checkpointing.
Any batch size, optimizer and accumulation is built from them exactly as from a fresh trace (the same scaling
code runs on the same numbers); other shapes are traced as before (and kept in the user's trace cache).
Beside them ship the raw traces of the ``validate`` zoo's training steps that the shared GPU runs
(``tests/data/gpu-runs``) need, one file per case (``zoo_entry_name``; see ``advisor.workload.trace_zoo``), so a
first ``validate --replay`` of those runs traces nothing either.

The set is keyed by the tracer's code (``tracer_fingerprint``: a hash of the tracing modules and the zoo's
model definitions) and the torch and torchvision versions it was made with.  It is used only where the code
matches and the installed torch is the same release (major.minor) or absent; each file's SHA-256 is in the
manifest and checked before use.  Anything else -> trace.  ``tests/test_trace_shipped.py`` fails when the set is
stale; regenerate it with::

    python benchmarks/ship_traces.py            # ~10 min on a loaded 2-core VM

Deterministic: the same tracer and torch give byte-identical files (sorted keys, gzip without a timestamp).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from advisor.workload.aten_ops import Gemm, OpGroup
from advisor.workload.trace import TraceResult

DATA_DIR = Path(__file__).resolve().parent / "traces"
MANIFEST = "manifest.json"
#: Bump when the files' layout changes.
FORMAT = 1
#: The precisions whose fake runs differ (``trace.trace_precision`` maps every other one onto fp32).
TRACE_PRECISIONS = ("fp32", "fp16", "bf16", "amp-fp16", "amp-bf16")
MODES = ("train", "infer")


def _tracer_files() -> list[Path]:
    here = Path(__file__).resolve().parent
    # not this module: its layout is FORMAT's
    return sorted([here / "trace.py", *here.glob("aten_*.py"), *here.glob("zoo*.py"),
                   *(p for p in here.glob("trace_*.py") if p.name != "trace_shipped.py")])


@functools.cache
def tracer_fingerprint() -> str:
    """A hash of what a preset's raw trace depends on in this package: the tracing modules and the zoo."""
    h = hashlib.sha256(f"shipped traces format {FORMAT}".encode())
    for path in _tracer_files():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _version(name: str) -> str | None:
    from advisor.workload.tracecache import package_version

    return package_version(name)


def _release(version: str | None) -> str | None:
    return None if version is None else ".".join(version.split("+")[0].split(".")[:2])


def entry_name(builder: str, image_size: int | None, seq_len: int | None, mode: str, precision: str) -> str:
    """The file name of one shipped shape."""
    size = f"img{image_size}" if image_size is not None else f"seq{seq_len}"
    return f"{builder}-{size}-{mode}-{precision}.json.gz"


def zoo_entry_name(model: str, batch_size: int, seq_len: int, precision: str, checkpoint: bool) -> str:
    """The file name of one shipped zoo training step (``advisor.workload.trace_zoo``)."""
    return f"zoo-{model}-b{batch_size}-seq{seq_len}-train-{precision}{'-ckpt' if checkpoint else ''}.json.gz"


def zoo_decode_entry_name(model: str, precision: str) -> str:
    """The file name of one shipped count of a zoo model's decoding loop (``trace_zoo.zoo_decode_ops``)."""
    return f"zoo-{model}-decode-{precision}.json.gz"


# -- JSON form ---------------------------------------------------------------------------------------------------

def trace_to_json(r: TraceResult) -> dict[str, Any]:
    """A ``TraceResult`` as JSON-safe data (``trace_from_json`` gives back an equal one)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(r):
        out[f.name] = getattr(r, f.name)
    out["groups"] = [[phase, name, dataclasses.asdict(g)] for (phase, name), g in r.groups.items()]
    out["gemms"] = [[g.phase, g.name, g.kind, g.tc, g.flops, g.bytes, list(g.dims)] for g in r.gemms]
    out["calls"] = None if r.calls is None else [[list(k) if k is not None else None, i, w] for k, i, w in r.calls]
    out["allocations"] = {k: v for k, v in r.allocations.items()}
    out["uncounted"] = list(r.uncounted)
    return out


def _number(value: Any, what: str, *, integral: bool = False, low: float = 0) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integral and not isinstance(value, int)):
        raise ValueError(f"{what}: {value!r} is not a {'whole ' if integral else ''}number")
    if not math.isfinite(value) or value < low:
        raise ValueError(f"{what}: {value!r} is not finite and >= {low}")
    return value


def _group(data: Mapping[str, Any]) -> OpGroup:
    if not isinstance(data, Mapping) or set(data) != {f.name for f in dataclasses.fields(OpGroup)}:
        raise ValueError("op group: not the OpGroup fields")
    kw = dict(data)
    if not isinstance(kw["kind"], str) or not isinstance(kw["tc"], bool):
        raise ValueError("op group: kind/tc")
    for name in ("flops", "bytes", "strided_elements", "tile_flops", "block_flops"):
        _number(kw[name], name)
    for name in ("count", "serial_steps"):
        _number(kw[name], name, integral=True)
    if kw["min_dim"] is not None:
        _number(kw["min_dim"], "min_dim", integral=True)
    if kw["gemms"] is not None:
        kw["gemms"] = tuple(tuple(_number(d, "gemm dim", integral=True) for d in g) for g in kw["gemms"])
    return OpGroup(**kw)


def trace_from_json(data: Mapping[str, Any]) -> TraceResult:
    """The ``TraceResult`` of ``trace_to_json``'s data.

    Raises:
        ValueError: not that layout, or a figure that is not a finite, non-negative number.
    """
    if not isinstance(data, Mapping) or set(data) != {f.name for f in dataclasses.fields(TraceResult)}:
        raise ValueError("not a trace: the fields differ")
    kw = dict(data)
    kw["groups"] = {(str(phase), str(name)): _group(g) for phase, name, g in kw["groups"]}
    kw["gemms"] = tuple(Gemm(str(p), str(n), str(k), bool(tc), _number(fl, "flops"), _number(by, "bytes"),
                             tuple(_number(d, "dim", integral=True) for d in dims))
                        for p, n, k, tc, fl, by, dims in kw["gemms"])
    if kw["calls"] is not None:  # thousands: checked in bulk
        kw["calls"] = tuple((tuple(key) if key is not None else None, i, w) for key, i, w in kw["calls"])
        if not all(type(i) is int and i >= -1 and type(w) in (int, float) and 0 <= w < math.inf
                   for _key, i, w in kw["calls"]):
            raise ValueError("calls: an index or a weight out of range")
    kw["uncounted"] = tuple(str(u) for u in kw["uncounted"])
    for name in ("params", "trainable_params", "param_bytes", "trainable_tensors"):
        _number(kw[name], name, integral=True)
    for name in ("activation_bytes", "transient_bytes", "gradient_bytes", "peak_bytes", "input_bytes",
                 "weight_copy_bytes", "temporaries_peak_bytes"):
        _number(kw[name], name)
    if not isinstance(kw["allocations"], Mapping):
        raise ValueError("allocations: not a mapping")
    return TraceResult(**kw)


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _document(pair: tuple[TraceResult, TraceResult, Mapping[str, Any]]) -> dict[str, Any]:
    r1, r2, facts = pair
    return {"traces": [trace_to_json(r1), trace_to_json(r2)], "facts": dict(facts)}


def _from_document(doc: Mapping[str, Any]) -> tuple[TraceResult, TraceResult, dict[str, Any]]:
    r1, r2 = (trace_from_json(t) for t in doc["traces"])
    facts = dict(doc["facts"])
    if facts.get("input") not in ("image", "tokens"):
        raise ValueError("facts: unknown input kind")
    facts["frozen_prefixes"] = tuple(str(p) for p in facts.get("frozen_prefixes", ()))
    return r1, r2, facts


def _zoo_document(traced: tuple[TraceResult, str]) -> dict[str, Any]:
    res, family = traced
    return {"trace": trace_to_json(res), "family": family}


def _zoo_from_document(doc: Mapping[str, Any]) -> tuple[TraceResult, str]:
    if not isinstance(doc.get("family"), str):
        raise ValueError("family: not a string")
    return trace_from_json(doc["trace"]), doc["family"]


# -- reading -----------------------------------------------------------------------------------------------------

@functools.cache
def _manifest(directory: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("entries"), dict) else None


@functools.cache
def _usable(directory: Path) -> bool:
    """Whether the shipped set matches this tracer and this torch (see the module docstring)."""
    manifest = _manifest(directory)
    if manifest is None or manifest.get("format") != FORMAT or manifest.get("code") != tracer_fingerprint():
        return False
    installed = _version("torch")
    return installed is None or _release(installed) == _release(manifest.get("torch"))


def shipped_trace(builder: str, image_size: int | None, seq_len: int | None, mode: str, precision: str,
                  checkpoint: bool = False, directory: Path | None = None,
                  ) -> tuple[TraceResult, TraceResult, dict[str, Any]] | None:
    """The shipped raw trace pair of a preset shape, or ``None`` (not shipped, stale, or failing its checksum)."""
    if checkpoint:
        return None
    return _entry(directory or DATA_DIR, entry_name(builder, image_size, seq_len, mode, precision), _from_document)


def shipped_zoo_trace(model: str, batch_size: int, seq_len: int, precision: str, checkpoint: bool,
                      directory: Path | None = None) -> tuple[TraceResult, str] | None:
    """The shipped raw trace of a zoo training step and the model's family, or ``None`` (as ``shipped_trace``)."""
    return _entry(directory or DATA_DIR, zoo_entry_name(model, batch_size, seq_len, precision, checkpoint),
                  _zoo_from_document)


def shipped_zoo_decode_ops(model: str, precision: str, directory: Path | None = None) -> dict[str, int] | None:
    """The shipped op counts of a zoo model's decoding loop (prefill, per token), or ``None`` (as ``shipped_trace``)."""
    return _entry(directory or DATA_DIR, zoo_decode_entry_name(model, precision), _decode_counts)


def _decode_counts(doc: Mapping[str, Any]) -> dict[str, int]:
    if set(doc) != {"prefill", "decode"}:
        raise ValueError("decode counts: not prefill and decode")
    return {k: _number(v, k, integral=True) for k, v in doc.items()}


_T = TypeVar("_T")


def _entry(directory: Path, name: str, decode: Callable[[Any], _T]) -> _T | None:
    if not _usable(directory):
        return None
    manifest = _manifest(directory)
    assert manifest is not None  # _usable checked it
    want = manifest["entries"].get(name)
    if not isinstance(want, str):
        return None
    try:
        raw = gzip.decompress((directory / name).read_bytes())
        if hashlib.sha256(raw).hexdigest() != want:
            return None
        return decode(json.loads(raw))
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, gzip.BadGzipFile):
        return None


# -- writing -----------------------------------------------------------------------------------------------------

def default_shapes() -> list[tuple[str, str, int | None, int | None]]:
    """(preset, builder, image_size, seq_len) of every traced preset at its default shape."""
    from advisor.workload.presets import PRESETS

    out: list[tuple[str, str, int | None, int | None]] = []
    for p in PRESETS.values():
        if p.kind != "module":
            continue
        if p.family == "rnn":
            out.append((p.name, p.config["builder"], None, p.config["seq_len"]))
        else:
            out.append((p.name, p.config["builder"], p.config["image_size"], None))
    return out


def encode(pair: tuple[TraceResult, TraceResult, Mapping[str, Any]]) -> tuple[bytes, str]:
    """(gzip bytes, SHA-256 of the JSON inside) of one shape's trace pair; deterministic."""
    return _compressed(_canonical(_document(pair)))


def encode_zoo(traced: tuple[TraceResult, str]) -> tuple[bytes, str]:
    """(gzip bytes, SHA-256 of the JSON inside) of one zoo training step (``trace_zoo.zoo_trace``); deterministic."""
    return _compressed(_canonical(_zoo_document(traced)))


def encode_counts(counts: Mapping[str, int]) -> tuple[bytes, str]:
    """(gzip bytes, SHA-256 of the JSON inside) of a zoo model's decoding-loop op counts; deterministic."""
    return _compressed(_canonical(dict(counts)))


def _compressed(raw: bytes) -> tuple[bytes, str]:
    return gzip.compress(raw, compresslevel=9, mtime=0), hashlib.sha256(raw).hexdigest()
