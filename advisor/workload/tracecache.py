"""An on-disk cache of traced workloads, so a repeated ``estimate``/``recommend`` skips torch and the trace.

Tracing a torch preset (resnet50, vit-b16, ...) on fake tensors costs seconds: importing torch
(~1.6 s on a 2-core VM) and two fake-tensor passes.  The result is plain data (a ``Workload`` of
``OpCost`` rows), so it is kept as JSON under the user's cache directory, one file per build:

    $GPU_ADVISOR_CACHE_DIR, else $XDG_CACHE_HOME/gpu-advisor, else ~/.cache/gpu-advisor  (+ /traces)

The key covers everything the trace depends on: the model (preset name and definition, or the
config), the shapes and options (batch, image size / sequence length, mode, precision, optimizer,
accumulation), the torch and torchvision versions, the advisor version and a hash of the
``advisor/workload`` source files (so any change to the tracer or the model definitions invalidates
it).  JSON, not pickle: loading a cache file runs no code.  A cache that cannot be read or written
is skipped silently (it only costs time); ``GPU_ADVISOR_CACHE_DIR=off`` turns it off.

Nothing read back is trusted: a file is one header line (layout, code fingerprint, its own key, the SHA-256
of the rest) and then the workload's JSON; it is used only when all four match and every figure in it is a
finite number (and every cost, size and count one >= 0).  An edited number, NaN/inf, a truncated, nested or
foreign file: the build runs again and the file is rewritten.  Within one process a file read once is kept in
memory (while the file stays the same), so a repeated ``estimate``/``recommend`` gets the same ``Workload``
object, and the estimator's per-workload preparation (``advisor.estimator.prepare_workload``) is reused.

While a trace runs, ``progress(message)`` is entered: a no-op context by default; the CLI sets a
spinner with ``set_progress`` (nothing below the CLI prints).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from advisor.workload.base import OpCost, Workload
from advisor.workload.options import BuiltOptions

ENV_CACHE_DIR = "GPU_ADVISOR_CACHE_DIR"
#: Bump when the file layout changes (2: options.allocations, the traced step for the allocator replay;
#: 3: a header line with the key and the checksum).
FORMAT = 3
#: A cache file larger than this is not read (the largest traced preset's is well under 2 MB).
MAX_FILE_BYTES = 64 << 20
#: Workloads read (or built) in this process, per file path: (the file's stat signature or None, the workload).
_MEMO: dict[str, tuple[tuple[int, int, int] | None, Workload]] = {}
_MEMO_SIZE = 64

_progress_factory: Callable[[str], contextlib.AbstractContextManager[Any]] | None = None


def set_progress(factory: Callable[[str], contextlib.AbstractContextManager[Any]] | None) -> None:
    """Install what runs around a trace (e.g. a spinner): ``factory(message)`` returns a context manager."""
    global _progress_factory
    _progress_factory = factory


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """Enter the installed progress context (a spinner in the CLI), or nothing."""
    if _progress_factory is None:
        yield
        return
    with _progress_factory(message):
        yield


def cache_dir() -> Path | None:
    """Where traces are kept (``None``: caching is off)."""
    raw = os.environ.get(ENV_CACHE_DIR, "").strip()
    if raw.lower() in ("off", "0", "none", "false"):
        return None
    if raw:
        return Path(raw).expanduser() / "traces"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "gpu-advisor" / "traces"


@functools.cache
def package_version(name: str) -> str | None:
    """An installed distribution's version, or ``None``, without importing it or ``importlib.metadata``.

    The first ``<name>-<version>.dist-info`` (or ``.egg-info``) on ``sys.path``, as ``importlib.metadata`` finds
    it; that module's import alone costs ~0.2 s on a 2-core VM, a fifth of a cold ``estimate``.
    """
    import sys

    want = name.lower().replace("-", "_")
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for item in names:
            stem, dot, suffix = item.rpartition(".")
            if suffix not in ("dist-info", "egg-info") or not dot:
                continue
            dist, sep, version = stem.partition("-")
            if sep and dist.lower().replace("-", "_").replace(".", "_") == want:
                return version.split("-")[0]
    return None


@functools.cache
def code_fingerprint() -> str:
    """Advisor version, torch/torchvision/transformers versions and a hash of the workload sources."""
    from advisor import __version__

    h = hashlib.sha256()
    h.update(f"format {FORMAT}; advisor {__version__}".encode())
    for pkg in ("torch", "torchvision", "transformers"):
        h.update(f"; {pkg} {package_version(pkg)}".encode())
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(kind: str, key: Mapping[str, Any]) -> str:
    """A file-name-safe key for ``key`` (JSON-able) under ``kind``, including the code fingerprint."""
    text = json.dumps({"kind": kind, "key": key, "code": code_fingerprint()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _to_json(w: Workload) -> dict[str, Any] | None:
    """The workload as JSON-safe data (``None`` when an option is not plain data; such builds are not cached)."""
    out = w.field_data()
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return out


def _non_negative(value: Any, where: str, *, integral: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integral and not isinstance(value, int)) \
            or value < 0:
        raise ValueError(f"{where}: {value!r} is not a {'whole ' if integral else ''}number >= 0")


_OP_FIGURES = ("flops", "bytes", "strided_elements", "tile_flops", "block_flops")
_OP_COUNTS = ("count", "serial_steps")
_FIGURES = ("activation_bytes", "transient_bytes", "kv_cache_bytes", "input_bytes_per_sample")
_COUNTS = ("params", "trainable_params", "lora_params")


def _op(data: Mapping[str, Any]) -> OpCost:
    if not isinstance(data, Mapping):
        raise ValueError("op: not a mapping")
    kw = dict(data)
    for name in _OP_FIGURES:
        if name in kw:
            _non_negative(kw[name], f"op {kw.get('name')!r} {name}")
    for name in _OP_COUNTS:
        if name in kw:
            _non_negative(kw[name], f"op {kw.get('name')!r} {name}", integral=True)
    if kw.get("min_dim") is not None:
        _non_negative(kw["min_dim"], "op min_dim", integral=True)
    if kw.get("gemms") is not None:
        kw["gemms"] = tuple(tuple(int(d) for d in g) for g in kw["gemms"])
        if any(len(g) != 3 or min(g) < 1 for g in kw["gemms"]):
            raise ValueError("op gemms: not positive (M, N, K)")
    return OpCost(**kw)


def _from_json(data: Mapping[str, Any]) -> Workload:
    """The workload of ``_to_json``'s data, its figures checked (``ValueError``/``TypeError``/``KeyError`` if not)."""
    if not isinstance(data, Mapping):
        raise ValueError("not a workload")
    kw = dict(data)
    for name in _FIGURES:
        if name in kw:
            _non_negative(kw[name], name)
    for name in _COUNTS:
        if name in kw:
            _non_negative(kw[name], name, integral=True)
    if not isinstance(kw.get("batch_size"), int) or isinstance(kw["batch_size"], bool) or kw["batch_size"] < 1 \
            or not isinstance(kw.get("params"), int) or kw["params"] < 1:
        raise ValueError("batch_size/params: not a whole number >= 1")
    kw["ops"] = tuple(_op(op) for op in kw["ops"])
    kw["decode_ops"] = tuple(_op(op) for op in kw.get("decode_ops", ()))
    for name in ("uncounted_ops", "assumptions"):
        kw[name] = tuple(str(x) for x in kw.get(name, ()))
    kw["calls"] = tuple((int(i), float(share)) for i, share in kw.get("calls", ()))
    if any(not 0 <= i < len(kw["ops"]) or share < 0 for i, share in kw["calls"]):
        raise ValueError("calls: an index outside the ops or a negative share")
    for name in ("arch", "eager_ops"):
        if not isinstance(kw.get(name, {}), Mapping):
            raise ValueError(f"{name}: not a mapping")
    kw["options"] = BuiltOptions.from_dict(kw.get("options", {}))
    return Workload(**kw)


def _header(key: str, body: bytes) -> bytes:
    head = {"format": FORMAT, "code": code_fingerprint(), "key": key, "sha256": hashlib.sha256(body).hexdigest()}
    return json.dumps(head, sort_keys=True).encode() + b"\n"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError(f"{text} is not a finite number")
    return value


def _read(path: Path) -> Workload | None:
    """The workload in a cache file, or ``None``: absent, unreadable, foreign, damaged or with a bad figure."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            return None
        head_line, sep, body = raw.partition(b"\n")
        if not sep or head_line + sep != _header(path.stem, body):
            return None  # another layout or tracer, another key (a renamed file), or edited content
        # every number finite (NaN, Infinity and 1e999 refused while parsing), then the figures' ranges
        return _from_json(json.loads(body, parse_constant=_no_constant, parse_float=_finite_float))
    # whatever a damaged file makes the parser or the dataclasses raise (a nesting too deep: RecursionError; a
    # field the dataclass does not take: TypeError) means trace again, never a crash
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError, OverflowError):
        return None


def _write(path: Path, w: Workload) -> None:
    data = _to_json(w)
    if data is None:
        return
    try:
        body = json.dumps(data, allow_nan=False).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "wb") as fh:
            fh.write(_header(path.stem, body) + body)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    except (OSError, ValueError):
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _remember(name: str, signature: tuple[int, int, int] | None, w: Workload) -> None:
    _MEMO[name] = (signature, w)
    while len(_MEMO) > _MEMO_SIZE:
        del _MEMO[next(iter(_MEMO))]


def cached_build(kind: str, key: Mapping[str, Any], batch_size: int, build: Callable[[int], Workload],
                 message: str) -> Workload:
    """``build(batch_size)``, from the disk cache when an identical build was made before.

    The workload's ``options.rebuild`` (other batch sizes) goes through the cache too.

    Args:
        kind: a namespace ("preset", "hf-config").
        key: everything the build depends on except the batch size and the code (JSON-able).
        batch_size: the micro-batch.
        build: builds the workload at a batch size (the slow path).
        message: what the progress spinner says while ``build`` runs.
    """

    def rebuild(b: int) -> Workload:
        return cached_build(kind, key, b, build, message)

    directory = cache_dir()
    name = f"{kind}-{cache_key(kind, {**key, 'batch_size': batch_size})}.json"
    if directory is None:
        with progress(message):
            w = build(batch_size)
        return dataclasses.replace(w, options=w.options.with_rebuild(rebuild))
    path = directory / name
    signature = _signature(path)
    memo = _MEMO.get(str(path))
    if memo is not None and memo[0] == signature:
        return memo[1]  # this file (or no file: built here), read or made by this process before, unchanged
    found = _read(path) if signature is not None else None
    if found is not None:
        w = found
    else:
        import sys

        fresh = "torch" not in sys.modules
        with progress(message):
            w = build(batch_size)
        if not (fresh and "torch" not in sys.modules):  # a build that imported no torch traced nothing (the
            _write(path, w)                                # shipped traces): storing it would only cost time
            signature = _signature(path)
    w = dataclasses.replace(w, options=w.options.with_rebuild(rebuild))
    _remember(str(path), signature, w)
    return w
