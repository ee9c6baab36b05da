"""A fake CUDA device for CI: it says "cuda", runs on the CPU, and is as strict as real CUDA where it matters.

Two parts, used together (see the ``fake_cuda`` fixture in ``tests/test_cuda_contract.py``):

- ``FakeCudaRuntime`` stands in for ``torch.cuda`` behind ``advisor.device.CudaRuntime``: device count,
  UUIDs, capability, scripted CUDA-event times, scripted allocator statistics and ``mem_get_info``, and a
  record of every call (synchronize, empty_cache, cuBLAS workspace clears, peak resets).
- ``FakeCudaMode`` (a ``TorchFunctionMode``) lets torch code address ``"cuda"`` / ``"cuda:N"`` while the
  tensors really live on the CPU (so FLOP and byte counts are real; the probe plans small shapes), and
  enforces what real CUDA enforces and a CPU would let pass:

  * a generator must be on the device its tensors land on: ``torch.randn(..., generator=cpu_gen)`` inside
    ``with torch.device("cuda")`` raises ``Expected a 'cuda' device type for generator but found 'cpu'``;
  * an op may not mix CUDA tensors with (non-scalar) CPU tensors;
  * ``pin_memory=True`` is accepted (and recorded), as on a CUDA machine.

  Tensors created on (or moved to) the fake device, and the results of ops on them, are tracked, so
  ``is_fake_cuda(t)`` tells where a tensor "is".
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

_CUDA = re.compile(r"^cuda(:\d+)?$")


def _is_cuda_spec(value: Any) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cuda"
    return isinstance(value, str) and bool(_CUDA.match(value))


def _is_cpu_spec(value: Any) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cpu"
    return value == "cpu"


class _IdSet:
    """A set of live objects by identity (tensors compare elementwise, so a WeakSet cannot hold them)."""

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref[Any]] = {}

    def add(self, obj: Any) -> None:
        key = id(obj)
        self._refs[key] = weakref.ref(obj, lambda _r, key=key: self._refs.pop(key, None))

    def discard(self, obj: Any) -> None:
        ref = self._refs.get(id(obj))
        if ref is not None and ref() is obj:
            del self._refs[id(obj)]

    def __contains__(self, obj: Any) -> bool:
        ref = self._refs.get(id(obj))
        return ref is not None and ref() is obj


class FakeCudaMode(TorchFunctionMode):
    """Maps "cuda" to the CPU for torch calls and checks device rules real CUDA enforces (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.cuda_tensors = _IdSet()
        self.cuda_generators = _IdSet()
        self.pinned_requests = 0
        self.calls: dict[str, int] = {}

    def cuda_generator(self, seed: int) -> torch.Generator:
        """A generator that counts as living on the fake CUDA device."""
        g = torch.Generator().manual_seed(seed)
        self.cuda_generators.add(g)
        return g

    def is_cuda(self, t: Any) -> bool:
        return isinstance(t, torch.Tensor) and t in self.cuda_tensors

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", str(func))
        self.calls[name] = self.calls.get(name, 0) + 1
        if name == "_parse_to":  # only parses "cuda:0"; the `to` that follows is where it moves
            return func(*args, **kwargs)
        target, args = self._target(name, tuple(args), kwargs)
        if name == "cuda":
            return args[0] if isinstance(args[0], torch.Tensor) else func(*args, **kwargs)
        if name == "__set__" and len(args) >= 2 and isinstance(args[0], torch.Tensor) \
                and isinstance(args[-1], torch.Tensor):  # `param.data = moved` (Module.to) moves the parameter
            if args[-1] in self.cuda_tensors:
                self.cuda_tensors.add(args[0])
            else:
                self.cuda_tensors.discard(args[0])
        if name == "pin_memory":
            self.pinned_requests += 1
            return args[0]
        if name == "is_pinned":
            return True
        flat_inputs, _ = tree_flatten((args, kwargs))
        tensors = [t for t in flat_inputs if isinstance(t, torch.Tensor)]
        on_cuda = [t for t in tensors if t in self.cuda_tensors]
        self._check_devices(name, kwargs, tensors, on_cuda, target)
        out = func(*args, **kwargs)
        return self._result(func, name, out, target, bool(on_cuda))

    def _target(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str | None, tuple[Any, ...]]:
        """Where the results land (an explicit device, also the one `with torch.device(...)` injects, or the
        target of `to` / `cuda` / `cpu`), with CUDA device arguments rewritten to the CPU (``kwargs`` in place)."""
        target: str | None = None
        if "device" in kwargs and kwargs["device"] is not None:
            target = "cuda" if _is_cuda_spec(kwargs["device"]) else "cpu"
            if target == "cuda":
                kwargs["device"] = "cpu"
        if kwargs.pop("pin_memory", False):
            self.pinned_requests += 1
        if name in ("to", "cuda", "cpu"):
            if name in ("cuda", "cpu"):
                target = name
            new_args = []
            for a in args:
                if _is_cuda_spec(a):
                    target, a = "cuda", "cpu"
                elif _is_cpu_spec(a):
                    target = "cpu"
                new_args.append(a)
            args = tuple(new_args)
        return target, args

    def _check_devices(self, name: str, kwargs: dict[str, Any], tensors: list[Any], on_cuda: list[Any],
                       target: str | None) -> None:
        """CUDA's errors for a generator of the other device and for tensors of two devices in one op."""
        generator = kwargs.get("generator")
        if generator is not None:
            lands = target or ("cuda" if on_cuda else "cpu")
            has = "cuda" if generator in self.cuda_generators else "cpu"
            if lands != has:
                raise RuntimeError(f"Expected a '{lands}' device type for generator but found '{has}'")
        if on_cuda and name not in ("copy_", "to", "cpu", "_parse_to", "__get__", "__set__", "__setitem__",
                                    "set_", "_has_compatible_shallow_copy_type"):
            stray = [t for t in tensors if t not in self.cuda_tensors and t.dim() > 0]
            if stray:
                raise RuntimeError("Expected all tensors to be on the same device, but found at least two "
                                   f"devices, cuda:0 and cpu! (fake CUDA: {name})")

    def _result(self, func: Any, name: str, out: Any, target: str | None, on_cuda: bool) -> Any:
        """``out``, its tensors marked as on the device they land on."""
        if name == "__get__" and on_cuda and getattr(getattr(func, "__self__", None), "__name__", "") in ("device",
                                                                                                       "is_cuda"):
            # `t.device` of a fake CUDA tensor says cuda, so code that makes new tensors "on t's device" does.
            return torch.device("cuda", 0) if isinstance(out, torch.device) else True
        if name == "__get__" and isinstance(out, torch.Tensor) and on_cuda and out not in self.cuda_tensors:
            self.cuda_tensors.add(out)  # `.grad` of a CUDA parameter (autograd made it, unseen) is on CUDA
            return out
        if name in ("__get__", "__set__", "_has_compatible_shallow_copy_type", "is_floating_point", "dim", "size",
                    "numel", "item", "tolist", "data_ptr", "element_size"):
            return out
        lands = target if target is not None else ("cuda" if on_cuda else None)
        if lands is not None:
            def mark(t: Any) -> Any:
                if isinstance(t, torch.Tensor):
                    if lands == "cuda":
                        self.cuda_tensors.add(t)
                    else:
                        self.cuda_tensors.discard(t)
                return t

            tree_map(mark, out)
        return out


@dataclass
class FakeEvent:
    """A CUDA event whose time is the runtime's event clock when recorded."""

    runtime: FakeCudaRuntime
    t: float | None = None

    def record(self) -> None:
        self.t = self.runtime.event_clock()
        self.runtime.calls.append("event.record")

    def synchronize(self) -> None:
        self.runtime.calls.append("event.synchronize")

    def elapsed_time(self, end: FakeEvent) -> float:
        if self.t is None or end.t is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        return (end.t - self.t) * 1e3  # milliseconds, like CUDA


@dataclass
class FakeCudaRuntime:
    """``advisor.device.CudaRuntime`` for fake GPUs whose tensors live on the CPU.

    Attributes:
        uuids: one per device (torch's order), without NVML's ``GPU-`` prefix as torch reports them.
        names: what each device calls itself.
        event_clock: seconds; CUDA events read it when recorded (real time by default, script it for exact tests).
        memory: scripted allocator statistics (``allocated``, ``peak_allocated``, ``peak_reserved``) in bytes.
        workspace_bytes: what cuBLAS workspaces hold until ``clear_workspaces`` (counted in ``allocated``).
        free_bytes / total_bytes: what ``mem_get_info`` answers.
    """

    uuids: Sequence[str] = ("00000000-0000-0000-0000-000000000000",)
    names: Sequence[str] = ("NVIDIA H100 80GB HBM3",)
    cc: tuple[int, int] = (9, 0)
    available: bool = True
    event_clock: Callable[[], float] = time.perf_counter
    memory: dict[str, int] = field(default_factory=lambda: {"allocated": 0, "peak_allocated": 3 << 20,
                                                            "peak_reserved": 4 << 20})
    workspace_bytes: int = 0
    free_bytes: int = 79 << 30
    total_bytes: int = 80 << 30
    mode: FakeCudaMode = field(default_factory=FakeCudaMode)
    calls: list[str] = field(default_factory=list)
    small_shapes: bool | None = True

    def is_available(self) -> bool:
        return self.available

    def device_count(self) -> int:
        return len(self.uuids) if self.available else 0

    def _check(self, index: int) -> None:
        if not 0 <= index < self.device_count():
            raise RuntimeError(f"CUDA error: invalid device ordinal {index}")

    def uuid(self, index: int) -> str | None:
        self._check(index)
        return self.uuids[index]

    def name(self, index: int) -> str:
        self._check(index)
        return self.names[min(index, len(self.names) - 1)]

    def capability(self, index: int) -> tuple[int, int]:
        self._check(index)
        return self.cc

    def versions(self) -> tuple[str | None, str | None]:
        return "13.0", None

    def arch_name(self, index: int) -> str | None:
        return None

    def generator(self, device: str, seed: int) -> torch.Generator:
        if not _is_cuda_spec(device):
            raise RuntimeError(f"fake CUDA runtime asked for a generator on {device!r}")
        return self.mode.cuda_generator(seed)

    def synchronize(self, index: int) -> None:
        self._check(index)
        self.calls.append("synchronize")

    def event(self) -> FakeEvent:
        return FakeEvent(self)

    @contextmanager
    def stream_context(self, index: int) -> Iterator[None]:
        self._check(index)
        self.calls.append(f"device({index})")
        yield

    def empty_cache(self) -> None:
        self.calls.append("empty_cache")

    def clear_workspaces(self) -> None:
        self.calls.append("clear_workspaces")
        self.workspace_bytes = 0

    def reset_peak(self, index: int) -> None:
        self.calls.append("reset_peak")

    def memory_stat(self, what: str, index: int) -> int:
        self._check(index)
        if what == "allocated":
            return self.memory["allocated"] + self.workspace_bytes
        return self.memory[what]

    def mem_get_info(self, index: int) -> tuple[int, int]:
        self._check(index)
        return self.free_bytes, self.total_bytes


@dataclass
class ScriptedClock:
    """Event times that advance only when told: ``advance(seconds)``."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
