"""Launch kernels of the probe: the cost of one tiny launch and the host's cost per dispatched eager op.

- launch: a tiny in-place add on one element; value is microseconds per launch.
- host_dispatch: the training forward of validate's own gpt2-tiny on 2 x 8 tokens (nn.Modules, autograd
  recording), timed on the host clock; value is microseconds of host time per aten op it dispatches, counted as
  the tracer counts them (``host_dispatch_s_per_op`` in the efficiencies: the estimator's ``host_op_s``).
- host_backward: that step's backward, the same way (``host_backward_s_per_op``).

torch is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from advisor.device import RegionTimer, clock_region_timer
from advisor.estimator.host import dispatched_library_ops
from advisor.probing.kernel_env import (
    KERNEL_ERRORS,
    KernelEnv,
    dispatch_counter,
    failed_result,
    free_memory,
    import_torch,
    timed_result,
)
from advisor.probing.results import KernelResult

__all__ = ["HOST_BATCH", "HOST_MODEL", "HOST_TOKENS", "run_host_backward", "run_host_dispatch", "run_launch"]


def run_launch(env: KernelEnv) -> KernelResult:
    """Microseconds per launch of a tiny op (an in-place add on one element), back to back."""
    torch = import_torch()
    x = torch.zeros(1, device=env.torch_device)
    try:
        def fn() -> None:
            x.add_(1.0)

        return timed_result(env, name="launch", precision=None, shape="1 element add_", fn=fn, work=None,
                            work_unit=None, unit="us", scale=1e-6, spec_peak=None)
    finally:
        x = None
        free_memory(env)


#: The probe's training step: validate's own gpt2-tiny (``advisor.workload.zoo``, nn.Modules with their Python, as
#: the traced models the estimator costs) on 2 sequences of 8 tokens, small enough that the device's time is
#: negligible beside the host's.
HOST_MODEL, HOST_BATCH, HOST_TOKENS = "gpt2-tiny", 2, 8


@dataclass
class _HostStep:
    forward: Callable[[], Any]  # the loss, autograd recording (what a training forward dispatches)
    prepare: Callable[[], None]  # zero_grad(set_to_none) + forward, its loss kept for ``backward``
    backward: Callable[[], None]  # the kept loss's backward
    forward_ops: int  # aten ops each dispatches, counted once (TorchDispatchMode), as the tracer counts them
    backward_ops: int
    forward_library: float = 0.0  # library op-equivalents beyond those ops (cuDNN attention, embedding backward)
    backward_library: float = 0.0


def _host_step(torch: Any, env: KernelEnv) -> _HostStep:
    from advisor.workload import zoo

    model, facts = zoo.build(HOST_MODEL, device="cpu")  # built, then moved, as validate does
    model = model.to(env.torch_device).train()
    shape = (HOST_BATCH, HOST_TOKENS)
    tokens = torch.randint(0, facts["vocab_size"], shape, generator=env.dev.generator(env.seed),
                           device=env.torch_device)

    def forward() -> Any:
        return model(tokens, targets=tokens)

    kept: list[Any] = []

    def prepare() -> None:
        model.zero_grad(set_to_none=True)
        kept[:] = [forward()]

    def backward() -> None:
        kept.pop().backward()

    prepare()
    backward()  # the first step builds lazy state (cuBLAS handles, autograd's device thread) outside the count
    fwd, bwd = dispatch_counter(), dispatch_counter()
    with fwd:
        loss = forward()
    with bwd:
        loss.backward()
    if not (fwd.n and bwd.n):  # a dispatch mode that saw nothing would turn the time into nonsense per op
        raise RuntimeError(f"no aten ops counted ({fwd.n} forward, {bwd.n} backward): cannot time per op")
    # the library calls among them cost more than a generic op (cuDNN's attention, the embedding's sort): counted as
    # the estimator will add them, so that the figure per op is a generic op's and they are not counted twice
    eff = _efficiency(env)
    library = [dispatched_library_ops(c.names, eff) if eff is not None else 0.0 for c in (fwd, bwd)]
    return _HostStep(forward, prepare, backward, fwd.n, bwd.n, library[0], library[1])


def _efficiency(env: KernelEnv) -> Any:
    """The estimator's default figures of the probed card (None: a CPU or a card the catalog lacks)."""
    from advisor.estimator.profiles import efficiency_for

    spec = env.spec
    return efficiency_for(spec) if spec is not None and env.torch_device != "cpu" else None


def _backward_timer(clock: Callable[[], float], synchronize: Callable[[], None],
                    prepare: Callable[[], None]) -> RegionTimer:
    """A region timer that times only each call's backward: a fresh forward runs untimed before every call."""

    def timer(fn: Callable[[], None], n: int) -> float:
        total = 0.0
        for _ in range(n):
            prepare()
            synchronize()
            t0 = clock()
            fn()
            synchronize()
            total += clock() - t0
        return total

    return timer


def _host_kernel(env: KernelEnv, name: str, phase: str,
                 measure: Callable[[_HostStep], tuple[Callable[[], None], int, float, RegionTimer, str]]
                 ) -> KernelResult:
    """Time one pass of the probe's training step, per aten op it dispatches.

    ``measure(step)`` gives the call to time, its aten ops, the library op-equivalents beyond them (the time is
    per op-equivalent: a generic op's), the region timer and the note; the model and its gradients go before the
    cache is emptied.
    """
    torch = import_torch()
    h = None
    try:
        h = _host_step(torch, env)
        fn, ops, library, timer, note = measure(h)
        return timed_result(env, name=name, precision=None,
                            shape=f"{HOST_MODEL} {phase} {HOST_BATCH}x{HOST_TOKENS}, {ops} ops", fn=fn, work=None,
                            work_unit=None, unit="us", scale=(ops + library) * 1e-6, spec_peak=None,
                            region_timer=timer, notes=(note,))
    except KERNEL_ERRORS as exc:
        return failed_result(env, name, None, f"{HOST_MODEL} {phase}", exc)
    finally:
        h = None
        free_memory(env)


def run_host_dispatch(env: KernelEnv) -> KernelResult:
    """Host microseconds per aten op a training forward dispatches (validate's gpt2-tiny, autograd recording).

    What the estimator's ``host_op_s`` is: the host's cost per op of the traced models' forward (module Python,
    argument parsing, dispatch, autograd recording, the launch call), per aten op as the tracer counts them.  Timed
    on the host clock (synchronized at both ends), so with tensors this small it is the host's cost.
    """
    return _host_kernel(env, "host_dispatch", "forward", lambda h: (
        h.forward, h.forward_ops, h.forward_library, clock_region_timer(env.clock, env.dev.synchronize),
        f"microseconds of host time per aten op of a training forward ({h.forward_ops} ops of validate's "
        f"{HOST_MODEL}, autograd recording{_library_note(h.forward_library)})"))


def run_host_backward(env: KernelEnv) -> KernelResult:
    """Host microseconds per aten op the backward of that step dispatches (the autograd engine's own cost).

    Each backward is timed alone, a fresh forward running untimed before it, over the backward's ops: on a GPU the
    backward runs on the autograd engine's device thread, whose cost per op is the host's, not the model's Python
    (``host_backward_s_per_op`` in the efficiencies).  (A whole step less a separately timed forward came out at
    or below zero on a loaded host: two noisy medians subtracted.)
    """
    return _host_kernel(env, "host_backward", "backward", lambda h: (
        h.backward, h.backward_ops, h.backward_library, _backward_timer(env.clock, env.dev.synchronize, h.prepare),
        f"microseconds of host time per aten op of a backward ({h.backward_ops} ops"
        f"{_library_note(h.backward_library)}), each timed alone after an untimed forward"))


def _library_note(library: float) -> str:
    return (f"; plus {library:g} op-equivalents of library calls, advisor.estimator.host.LIBRARY_CALL_HOST_OPS, "
            "which the estimate adds itself" if library else "")
