"""The eager host's side of a step: dispatch, CUDA launch calls, cuDNN's own host cost, and how it overlaps the GPU.

PyTorch eager dispatches every operator from Python and the GPU runs behind it asynchronously.  An analytic
workload (op counts per phase, no order) takes, per phase, the longer of its GPU time and its host time
(``host_floor``: the host's lead carries within a phase of repeated layers); a traced step, whose calls are in
order, replays the launch queue call by call (``queue_replay``).  On a CPU "card" the same cores dispatch and
compute, so the host time adds instead.  Pure arithmetic over ``advisor.estimator.time``'s prepared ops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from advisor.estimator.efficiency import HOST_BACKWARD_FRACTION, TRACED_HOST_BACKWARD_FRACTION, ArchEfficiency
from advisor.estimator.ops import PreparedOp
from advisor.estimator.pricing import PHASES

#: Host time of a cuDNN call beyond a generic dispatched op, in forward-op units (``host_op_s``, so that a probe of
#: the host scales it): cuDNN picks an engine, builds or looks up its execution plan and sets descriptors on every
#: call.  The H200 profile (torch.profiler CPU time per call, torch 2.11 / cuDNN 9, ResNet-50 fp32 b128 and lstm-lm
#: b128: profile-ops.json) measured aten::cudnn_convolution 75 us, aten::convolution_backward 205 us,
#: aten::_cudnn_rnn 314 us and aten::_cudnn_rnn_backward 877 us per call, i.e. less a generic op (10 us forward,
#: 5.5 us backward): 6.5, 20, 30 and 87 op-equivalents.  PyTorch's own timing of the v8 conv API (pytorch#51390: a
#: 1x1 conv call 52 us on the host) agrees in size.  Unprofiled, this is what makes ResNet-50 at batch 32 host-bound
#: (24 ms measured on the H200 where 11 ms of generic dispatch and 15 ms of kernels were predicted).
#: An embedding's backward on CUDA is no single kernel either (aten/src/ATen/native/cuda/Embedding.cu,
#: EmbeddingBackwardKernel.cu): a cub radix sort of the int64 indices over all 64 bits (the profile's 8
#: ``DeviceRadixSortOnesweepKernel`` per call), then cub's unique-by-key, partial-segment counts, scans and the
#: segmented sums, each with its own temporary storage: the same profile measured aten::embedding_dense_backward at
#: 443 us of host per call (lstm-lm, 32,768 indices), 44 op-equivalents less a generic backward op.  Per embedding
#: table (GPT-2: tokens and positions; BERT: and token types).
#: SDPA's fused 16-bit attention on Hopper and newer is cuDNN's (SDPA's first choice there since PyTorch 2.5's release
#: notes and pytorch#143066, second on other sm80+ cards; the profile's torch 2.11 steps ran
#: ``_scaled_dot_product_cudnn_attention``), a graph-API call that looks up its
#: execution plan and sets up its tensors each time: the outer SDPA call took 111-121 us of host more than the same
#: step's median simple op (add, gelu, casts) forward (GPT-2 amp and bf16, llama-small) and 78-130 us more backward
#: (and BERT-base, ViT-B/16): the medians, 11 and 12 op-equivalents.  Generation's calls (inference mode: the GPT-2
#: decode profile) measured 69 us more, 7, taken for a prefill's; a decode step's attention carries no tile work
#: (priced by its KV-cache bytes), so its calls are not charged.
LIBRARY_CALL_HOST_OPS: dict[tuple[str, str], float] = {("conv", "forward"): 6.5, ("conv", "backward"): 20.0,
                                                       ("recurrent", "forward"): 30.0,
                                                       ("recurrent", "backward"): 87.0,
                                                       ("embedding", "backward"): 44.0,
                                                       ("attention", "forward"): 11.0,
                                                       ("attention", "backward"): 12.0,
                                                       ("attention", "inference"): 7.0}
#: Host cost of non-reentrant activation checkpointing (``torch.utils.checkpoint``, as validate and Hugging Face's
#: ``gradient_checkpointing_enable`` run it): every tensor a checkpointed block saves goes through Python pack
#: hooks in forward, and backward re-runs the blocks' Python forward under the recompute machinery.  MEASURED by
#: benchmarks/count_checkpoint_host.py (CPU thread time, tiny widths so that only the host counts; torchvision ViT
#: and the zoo's GPT-2, 12 blocks each, three runs): a checkpointed forward costs 1.4-2.2x the plain forward's
#: host time per op (median 1.7); each recomputed op costs 1.1-2.1 plain forward ops in backward (median 1.5),
#: where a plain backward op costs HOST_BACKWARD_FRACTION of one.  Applied to the whole forward (its blocks
#: dominate it) and to as many recomputed ops as the forward dispatches.
CHECKPOINT_FORWARD_FACTOR = 1.7
CHECKPOINT_RECOMPUTE_OPS = 1.5
CHECKPOINT_HOST_SOURCE = (f"non-reentrant checkpointing costs the host {CHECKPOINT_FORWARD_FACTOR}x a plain forward "
                          f"op per checkpointed op, and {CHECKPOINT_RECOMPUTE_OPS} forward ops per recomputed op in "
                          "backward (pack/unpack hooks, the recompute's Python; benchmarks/count_checkpoint_host.py)")
#: ``torch.amp.GradScaler`` (what amp-fp16 training runs, validate included): ``scaler.step(optimizer)`` reads the
#: inf/nan check with ``.item()`` before stepping, so the host waits for backward's last kernel and the optimizer's
#: host work (its foreach dispatches) then runs with the GPU idle (torch/amp/grad_scaler.py, ``_maybe_opt_step``).
#: H200 profile: ResNet-50 b128 leaves the GPU idle 3.3 ms per step with amp-fp16, 1.6 ms in fp32.
GRAD_SCALER_SYNC: dict[str, tuple[str, ...]] = {"amp-fp16": ("optimizer",)}
GRAD_SCALER_SOURCE = ("amp-fp16 trains with torch.amp.GradScaler, whose step() waits for backward's last kernel "
                      "(.item() on the inf check): the optimizer's host work then runs with the GPU idle")
QUEUE_SOURCE = ("eager launch queue replayed call by call on the traced step: the host issues each call (dispatch, "
                "launch call, cuDNN's own cost), the GPU runs it once issued and free, so stretches of small kernels "
                "wait on the host even where a phase has more GPU than host time")
#: Which card runs which of these calls, and at what cost, is its profile's (``library_ops``: the figures above where
#: the family runs cuDNN / cuDNN's attention / cub, MIOpen and hipcub inherited from them, 0 where the family runs
#: other kernels, e.g. FlashAttention-2 on Ampere and Ada); ``LIBRARY_CALL_HOST_OPS`` is the measurement they cite.
_CALL = LIBRARY_CALL_HOST_OPS
LIBRARY_HOST_SOURCE = ("each cuDNN convolution / recurrent / attention call, and each embedding backward, costs the "
                       "host more than a generic op (engine choice, plan cache, descriptors; cub's sort passes): "
                       f"{_CALL['conv', 'forward']:g} / "
                       f"{_CALL['conv', 'backward']:g} forward-op equivalents per conv forward / backward, "
                       f"{_CALL['recurrent', 'forward']:g} / {_CALL['recurrent', 'backward']:g} per LSTM/GRU forward / "
                       f"backward, {_CALL['embedding', 'backward']:g} per embedding table's backward (a sort of its "
                       f"indices and a segmented sum), on Hopper and newer {_CALL['attention', 'forward']:g} / "
                       f"{_CALL['attention', 'backward']:g} per fused attention forward / backward (cuDNN's SDPA; "
                       f"{_CALL['attention', 'inference']:g} in a prefill) (H200 torch.profiler CPU times per call); "
                       "where PyTorch's ROCm build runs hipBLASLt (gfx90a / gfx942), each GEMM call's heuristic query "
                       "(the card's profile: gemm_forward_ops / gemm_backward_ops; AMD's hipBLASLt api_overhead "
                       "benchmark, ~15 us per call)")


#: The aten ops a dispatch mode sees on a CUDA device that are library calls, and their ``LIBRARY_CALL_HOST_OPS`` key.
LIBRARY_OPS: dict[str, tuple[str, str]] = {
    "convolution": ("conv", "forward"), "convolution_backward": ("conv", "backward"),
    "_cudnn_rnn": ("recurrent", "forward"), "_cudnn_rnn_backward": ("recurrent", "backward"),
    "embedding_dense_backward": ("embedding", "backward"),
    "_scaled_dot_product_cudnn_attention": ("attention", "forward"),
    "_scaled_dot_product_cudnn_attention_backward": ("attention", "backward"),
    # BLAS calls: a profile prices them alike forward and backward, so the forward key stands for both phases
    **{name: ("gemm", "forward") for name in ("mm", "addmm", "bmm", "baddbmm", "_addmm_activation")}}


def dispatched_library_ops(names: Mapping[str, int], eff: ArchEfficiency) -> float:
    """Library op-equivalents, beyond a generic op each, of the aten ops dispatched on a card (name -> count).

    What a host timing per dispatched op holds beyond its generic ops: the probe's host kernels divide by their ops
    plus these, so that the ``host_op_s`` they set is a generic op's and the estimate adds the library calls once.
    """
    total = 0.0
    for name, n in names.items():
        key = LIBRARY_OPS.get(name)
        if key is not None:
            total += n * eff.library_call_ops(*key)
    return total


def _library_ops_per_call(op: PreparedOp, eff: ArchEfficiency) -> float:
    """One call's host time beyond a generic op, in forward-op units, on ``eff``'s card (its profile's figures)."""
    if not op.library:
        return 0.0
    phase = PHASES[op.phase]
    key = "inference" if phase in ("prefill", "decode") and op.library == "attention" else \
        "backward" if phase == "backward" else "forward"
    return eff.library_call_ops(op.library, key)


def library_call_ops(ops: Sequence[PreparedOp], eff: ArchEfficiency, serial: bool = False) -> list[float]:
    """Per phase: the library calls' host time beyond a generic op, in forward-op units (``LIBRARY_CALL_HOST_OPS``).

    Zero for a call whose library the card does not run (its profile's ``library_ops``), and all zero on the
    host's own CPU (``serial``).
    """
    out = [0.0] * len(PHASES)
    if serial:
        return out
    for op in ops:
        out[op.phase] += op.calls * _library_ops_per_call(op, eff)
    return out


def backward_fraction(eager_ops: Mapping[str, int]) -> float:
    """A backward op's share of a forward op's host time.

    Hugging Face's with the builders' counts (``HOST_BACKWARD_FRACTION``), else a traced module's
    (``TRACED_HOST_BACKWARD_FRACTION``).
    """
    return HOST_BACKWARD_FRACTION if "backward" in eager_ops else TRACED_HOST_BACKWARD_FRACTION


def backward_op_s(eff: ArchEfficiency, backward: float) -> float:
    """Host seconds per backward op: a probe's measured figure for this host, else ``backward`` of a forward op."""
    return eff.host_backward_op_s or eff.host_op_s * backward


def _dispatch_s(phase: int, eff: ArchEfficiency, backward: float) -> float:
    """Host seconds to dispatch one generic op in ``phase`` (backward ops: ``backward_op_s``)."""
    return backward_op_s(eff, backward) if PHASES[phase] == "backward" else eff.host_op_s


def phase_host_s(ops: Sequence[PreparedOp], eager_ops: Mapping[str, int], eff: ArchEfficiency, serial: bool = False,
                 checkpointed: bool = False, library: Sequence[float] | None = None) -> list[float]:
    """Host seconds per phase of PyTorch eager: dispatch, CUDA launch calls, cuDNN calls, checkpointing.

    Dispatched ops per phase come from ``eager_ops`` (the analytic builders' measured counts) or, for a
    phase it lacks, the ops' own counts (the tracer sees every dispatched op).  ``eff.host_op_s`` per
    forward op, ``HOST_BACKWARD_FRACTION`` of it per backward op (``TRACED_HOST_BACKWARD_FRACTION`` where the
    backward's ops are the traced module's own), plus ``eff.host_launch_s`` per kernel the phase
    launches (the CUDA launch call), plus the cuDNN calls' own host time (``LIBRARY_CALL_HOST_OPS``) on NVIDIA
    cards.  ``serial``: the host's own CPU computes (and launches nothing).  ``checkpointed``: the step checkpoints
    its blocks; the forward's dispatch costs ``CHECKPOINT_FORWARD_FACTOR`` times more and the recomputed ops (as
    many as the forward dispatches, counted among the backward's at the backward rate) ``CHECKPOINT_RECOMPUTE_OPS``
    forward ops each.  ``library``: ``library_call_ops(ops, eff, serial)`` when the caller has it already.
    """
    counts = [0] * len(PHASES)
    kernels = [0] * len(PHASES)
    for op in ops:
        counts[op.phase] += op.calls
        if op.flops or op.bytes:  # views and metadata ops launch no kernel
            kernels[op.phase] += op.calls
    launch = 0.0 if serial else eff.host_launch_s
    if library is None:
        library = library_call_ops(ops, eff, serial)
    ckpt_fwd = eager_ops.get("forward", counts[0]) if checkpointed and not serial else 0  # forward ops recomputed
    backward = backward_fraction(eager_ops)
    out = [0.0] * len(PHASES)
    for i, name in enumerate(PHASES):
        n = eager_ops.get(name, counts[i]) if counts[i] else 0  # only phases these ops run in
        if not n:
            continue
        host = n * _dispatch_s(i, eff, backward) + kernels[i] * launch + library[i] * eff.host_op_s
        if ckpt_fwd and name in ("forward", "backward"):  # recomputed ops are counted among backward's already
            host += ckpt_fwd * ((CHECKPOINT_FORWARD_FACTOR - 1.0) * eff.host_op_s if name == "forward"
                                else CHECKPOINT_RECOMPUTE_OPS * eff.host_op_s - backward_op_s(eff, backward))
        out[i] = host
    return out


def host_floor(phases: Sequence[float], ops: Sequence[PreparedOp], eager_ops: Mapping[str, int],
               eff: ArchEfficiency, serial: bool = False, checkpointed: bool = False,
               library: Sequence[float] | None = None) -> tuple[list[float], float]:
    """Per-phase seconds with the eager host's dispatch time applied, and the host time exposed.

    Each phase takes the longer of its GPU time and its host time (``phase_host_s``: the host's lead carries
    within a phase of repeated layers); on the host's own CPU (``serial``) the two add.  The analytic builders'
    rule; a traced step, whose calls are in order, replays the launch queue instead (``queue_replay``).
    """
    host = phase_host_s(ops, eager_ops, eff, serial, checkpointed, library)
    out = list(phases)
    exposed = 0.0
    for i, h in enumerate(host):
        if serial:
            out[i] += h
            exposed += h
        elif h > out[i]:
            exposed += h - out[i]
            out[i] = h
    return out, exposed


def queue_replay(calls: Sequence[tuple[int, float]], ops: Sequence[PreparedOp], per_op_s: Sequence[float],
                 phases: Sequence[float], host: Sequence[float], eff: ArchEfficiency, launch_s: float, backward: float,
                 sync_before: Sequence[int] = ()) -> tuple[list[float], float]:
    """Per-phase seconds and the host time exposed, replaying PyTorch eager's launch queue call by call.

    The host issues a traced step's calls in order; the GPU starts a call's kernel once it is issued and the
    kernel before it is done: ``gpu = max(gpu, issued) + its time``.  So a stretch of small kernels (the last
    layers of a CNN, the loss, the start of backward) leaves the GPU waiting on the host even where the phase as a
    whole has more GPU than host time, which a per-phase floor cannot see.  A call's GPU time is its share of its
    op's (``per_op_s``) plus one launch gap (``launch_s``) if the op launches kernels; its host time is its share
    of the phase's (``host``: ``phase_host_s``), split in proportion to each call's own dispatch, launch-call and
    cuDNN cost (a backward op's dispatch ``backward`` of a forward one's: ``backward_fraction``).  Phases without
    calls (the optimizer, costed analytically) follow as one stream of equal calls.  The step starts from an idle
    queue and ends when the host has issued everything and the GPU has run it: what validate times (CUDA events
    around each step, synchronized before it).  ``sync_before``: phases the host starts only once the GPU has
    caught up (``GRAD_SCALER_SYNC``).
    """
    n_ph = len(PHASES)
    # per op (a few dozen), then per call: the call's own host cost, whether it launches a kernel, its phase
    own = [_dispatch_s(op.phase, eff, backward) + (eff.host_launch_s if (op.flops or op.bytes) else 0.0)
           + _library_ops_per_call(op, eff) * eff.host_op_s for op in ops]
    totals = [0.0] * n_ph
    for idx, _share in calls:
        totals[ops[idx].phase] += own[idx]
    scale = [host[ph] / totals[ph] if totals[ph] else 0.0 for ph in range(n_ph)]
    issue = [own[i] * scale[op.phase] for i, op in enumerate(ops)]  # host seconds per call of each op
    kernel = [bool(op.flops or op.bytes) for op in ops]
    issued = gpu = 0.0
    end = [0.0] * n_ph
    seen = [False] * n_ph
    for idx, share in calls:
        issued += issue[idx]
        if kernel[idx]:
            gpu = (gpu if gpu > issued else issued) + per_op_s[idx] * share + launch_s
        ph = ops[idx].phase
        seen[ph] = True
        end[ph] = gpu if gpu > issued else issued
    for ph in range(n_ph):  # phases the calls do not cover run after them
        if seen[ph] or not (phases[ph] or host[ph]):
            continue
        if ph in sync_before:
            issued = gpu = max(issued, gpu)
        n = 64  # a stream of small calls (foreach passes over parameter lists)
        for _ in range(n):
            issued += host[ph] / n
            gpu = max(gpu, issued) + phases[ph] / n
        end[ph] = max(gpu, issued)
    out = [0.0] * n_ph
    last = 0.0
    for ph in range(n_ph):
        if seen[ph] or end[ph]:
            out[ph] = max(0.0, end[ph] - last)
            last = max(last, end[ph])
    exposed = max(0.0, sum(out) - sum(phases))
    return out, exposed
