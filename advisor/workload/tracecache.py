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

While a trace runs, ``progress(message)`` is entered: a no-op context by default; the CLI sets a
spinner with ``set_progress`` (nothing below the CLI prints).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from advisor.workload.base import OpCost, Workload

ENV_CACHE_DIR = "GPU_ADVISOR_CACHE_DIR"
#: Bump when the file layout changes (2: options['allocations'], the traced step for the allocator replay).
FORMAT = 2

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


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def code_fingerprint() -> str:
    """Advisor version, torch/torchvision/transformers versions and a hash of the workload sources."""
    from advisor import __version__

    h = hashlib.sha256()
    h.update(f"format {FORMAT}; advisor {__version__}".encode())
    for pkg in ("torch", "torchvision", "transformers"):
        h.update(f"; {pkg} {_package_version(pkg)}".encode())
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
    out: dict[str, Any] = {}
    for f in dataclasses.fields(w):
        value = getattr(w, f.name)
        if f.name in ("ops", "decode_ops"):
            value = [op.to_dict() for op in value]
        elif f.name == "options":
            value = {k: v for k, v in value.items() if k != "rebuild"}
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return out


def _op(data: Mapping[str, Any]) -> OpCost:
    kw = dict(data)
    if kw.get("gemms") is not None:
        kw["gemms"] = tuple(tuple(int(d) for d in g) for g in kw["gemms"])
    return OpCost(**kw)


def _from_json(data: Mapping[str, Any]) -> Workload:
    kw = dict(data)
    kw["ops"] = tuple(_op(op) for op in kw["ops"])
    kw["decode_ops"] = tuple(_op(op) for op in kw.get("decode_ops", ()))
    for name in ("uncounted_ops", "assumptions"):
        kw[name] = tuple(kw.get(name, ()))
    kw["calls"] = tuple((int(i), float(share)) for i, share in kw.get("calls", ()))
    return Workload(**kw)


def _read(path: Path) -> Workload | None:
    try:
        return _from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent, partial, or from another layout: trace again


def _write(path: Path, w: Workload) -> None:
    data = _to_json(w)
    if data is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


def cached_build(kind: str, key: Mapping[str, Any], batch_size: int, build: Callable[[int], Workload],
                 message: str) -> Workload:
    """``build(batch_size)``, from the disk cache when an identical build was made before.

    The workload's ``options['rebuild']`` (other batch sizes) goes through the cache too.

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
    path = None if directory is None else directory / name
    w = _read(path) if path is not None else None
    if w is None:
        with progress(message):
            w = build(batch_size)
        if path is not None:
            _write(path, w)
    return dataclasses.replace(w, options={**w.options, "rebuild": rebuild})
