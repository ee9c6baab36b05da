"""Launch kernels of the probe: the cost of one tiny launch and the host's cost per dispatched eager op.

- launch: a tiny in-place add on one element; value is microseconds per launch.
- host_dispatch: a transformer-block-like sequence of ~20 small ops (layer norm, linears, views,
  attention matmuls, softmax, gelu, adds) on tiny tensors, timed on the host clock; value is
  microseconds of host time per dispatched op (``host_dispatch_s_per_op`` in the efficiencies).

torch is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from advisor.device import clock_region_timer
from advisor.probing.kernel_env import KERNEL_ERRORS, KernelEnv, failed_result, free_memory, import_torch, timed_result
from advisor.probing.results import KernelResult

__all__ = ["HOST_DISPATCH_OPS", "run_host_dispatch", "run_launch"]


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


#: Ops per iteration of the host-dispatch sequence (Python-level torch calls, views included).
HOST_DISPATCH_OPS = 23


def _block_sequence(torch: Any, env: KernelEnv, batch: int = 2, tokens: int = 8, width: int = 64,
                    heads: int = 4) -> Callable[[], None]:
    """One tiny transformer block (pre-norm attention + MLP) as ``HOST_DISPATCH_OPS`` eager ops."""
    F = torch.nn.functional
    g = env.dev.generator(env.seed)
    dev = env.torch_device

    def w(*shape: int) -> Any:
        return torch.randn(*shape, generator=g, device=dev) * 0.05

    x = torch.randn(batch, tokens, width, generator=g, device=dev)
    ln_w, ln_b = torch.ones(width, device=dev), torch.zeros(width, device=dev)
    wq, wk, wv, wo = w(width, width), w(width, width), w(width, width), w(width, width)
    w1, w2 = w(4 * width, width), w(width, 4 * width)
    d = width // heads
    scale = d ** -0.5

    def block() -> None:
        h = F.layer_norm(x, (width,), ln_w, ln_b)                                   # 1
        q = F.linear(h, wq).view(batch, tokens, heads, d).transpose(1, 2)           # 2-4
        k = F.linear(h, wk).view(batch, tokens, heads, d).transpose(1, 2)           # 5-7
        v = F.linear(h, wv).view(batch, tokens, heads, d).transpose(1, 2)           # 8-10
        s = torch.matmul(q, k.transpose(-2, -1)) * scale                            # 11-13
        o = torch.matmul(torch.softmax(s, dim=-1), v)                               # 14-15
        o = F.linear(o.transpose(1, 2).reshape(batch, tokens, width), wo)           # 16-18
        x1 = x + o                                                                   # 19
        m = F.linear(F.gelu(F.linear(F.layer_norm(x1, (width,), ln_w, ln_b), w1)), w2)  # 20-23
        _ = x1 + m

    return block


def run_host_dispatch(env: KernelEnv) -> KernelResult:
    """Host microseconds per dispatched op on a realistic small-op sequence (a tiny transformer block).

    The bare ``launch`` figure is one op in a tight loop; a model's eager step mixes views, linears,
    norms and activations with their argument parsing and autograd-free dispatch.  Timed on the host
    clock (synchronized at both ends), so with tensors this small it is the host's cost, not the device's.
    """
    torch = import_torch()
    try:
        with torch.inference_mode():
            block = _block_sequence(torch, env)
            result = timed_result(env, name="host_dispatch", precision=None,
                                  shape=f"transformer block, {HOST_DISPATCH_OPS} ops, 2x8x64", fn=block, work=None,
                                  work_unit=None, unit="us", scale=HOST_DISPATCH_OPS * 1e-6, spec_peak=None,
                                  region_timer=clock_region_timer(env.clock, env.dev.synchronize),
                                  notes=(f"microseconds of host time per op: {HOST_DISPATCH_OPS} eager ops per block "
                                   "(layer_norm, linear, view, transpose, matmul, mul, softmax, reshape, add, gelu)",))
        return result
    except KERNEL_ERRORS as exc:
        return failed_result(env, "host_dispatch", None, "transformer block", exc)
    finally:
        free_memory(env)
