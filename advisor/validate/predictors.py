"""Predictors: `estimate` for the local card (or the CPU pseudo-card), and a meta-device trace fallback."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

from advisor.errors import AdvisorError
from advisor.precision import optimizer_state_bytes
from advisor.validate.models import default_builder, enable_checkpointing, find_blocks
from advisor.validate.records import Builder, Case, DeviceContext, Prediction, Predictor, _autocast, _dtype
from advisor.workload.zoo import TRANSFORMERS

#: Parts of the estimator's overhead that exist only on a GPU (left out of CPU predictions): the CUDA context,
#: cuBLAS workspaces, and the CUDA caching allocator's segments (torch's CPU tensors come from the C heap).
GPU_ONLY_OVERHEAD = ("cuda_context", "library_workspaces", "allocator")


def cpu_card(device: DeviceContext) -> Any:
    """A pseudo catalog card for the local CPU, from its measured rates (so ``estimate`` can run on it)."""
    from advisor.catalog import spec_from_mapping

    r = device.rates
    if not r.get("matmul_fp32_flops") or not r.get("memory_copy_bytes_s"):
        raise AdvisorError("the CPU's rates were not measured", hint="use local_device() to describe the CPU")
    data: dict[str, Any] = {
        "id": "local-cpu", "name": f"local CPU: {device.name}", "vendor": "nvidia", "segment": "edge",
        "architecture": "cpu", "release_year": 2000, "memory_gb": r.get("memory_bytes", 16e9) / 1e9,
        "memory_type": "host RAM", "memory_bandwidth_gbs": r["memory_copy_bytes_s"] / 1e9,
        "fp32_tflops": r["matmul_fp32_flops"] / 1e12, "tdp_w": 100,
        "source": f"measured on this machine: {device.rates_source}"}
    if r.get("matmul_bf16_flops"):
        data["bf16_tflops"] = r["matmul_bf16_flops"] / 1e12
    return spec_from_mapping(data, "<local cpu>")


@functools.lru_cache(maxsize=64)
def _zoo_workload(model: str, batch_size: int, seq_len: int, precision: str, optimizer: str | None,
                  gradient_checkpointing: bool = False) -> Any:
    """The traced training step of a zoo transformer, with validate's own loss and checkpointed blocks.

    Cached: replays predict the same case for many cards; and kept in the trace cache, so a later replay of the
    same run traces nothing (``advisor.workload.tracecache``).
    """
    from advisor.workload.tracecache import cached_build

    def build(batch: int) -> Any:
        from advisor.workload.trace_zoo import zoo_workload

        return zoo_workload(model, batch, seq_len, precision, optimizer, gradient_checkpointing)

    key = {"model": model, "seq_len": seq_len, "precision": precision, "optimizer": optimizer,
           "gradient_checkpointing": gradient_checkpointing}
    return cached_build("validate-zoo", key, batch_size, build, f"tracing validate's {model} (once; cached)")


def estimator_model(case: Case) -> tuple[Any, dict[str, Any]]:
    """What to hand ``estimate`` for a case, and the keywords that go with it.

    The zoo module itself (traced) for a transformer's training step, an HF-style config of the model run for
    its decoding steps, or the preset name.
    """
    kwargs: dict[str, Any] = {}
    if case.seq_len:
        kwargs["seq_len"] = case.seq_len
    if case.image_size:
        kwargs["image_size"] = case.image_size
    cfg = TRANSFORMERS.get(case.model)
    if cfg is None:
        return case.model, kwargs
    if case.mode == "train":
        # the very module validate runs, traced on the meta device: every op it dispatches (its unfused
        # RMSNorm, rotary and GELU, its MLM head over the vocabulary, its checkpointed blocks), not the Hugging
        # Face class a config describes
        return _zoo_workload(case.model, case.batch_size, case.seq_len or 128, case.precision, case.optimizer,
                             case.gradient_checkpointing), {}
    if case.mode == "infer" and not case.gen_len and cfg["family"] != "bert":
        kwargs["gen_len"] = 0  # the run is one forward over the sequence (logits at every position), no generation
    if cfg["family"] == "gpt":
        config = {"model_type": "gpt2", "n_layer": cfg["layers"], "n_embd": cfg["d"], "n_head": cfg["heads"],
                  "vocab_size": cfg["vocab"], "n_positions": cfg["max_pos"], "tie_word_embeddings": True,
                  "resid_pdrop": 0.0, "activation_function": "gelu_pytorch_tanh"}  # the zoo's fused tanh GELU
    elif cfg["family"] == "llama":
        config = {"model_type": "llama", "num_hidden_layers": cfg["layers"], "hidden_size": cfg["d"],
                  "num_attention_heads": cfg["heads"], "num_key_value_heads": cfg["heads"],
                  "intermediate_size": cfg["ff"], "vocab_size": cfg["vocab"], "tie_word_embeddings": False}
    else:
        config = {"model_type": "bert", "num_hidden_layers": cfg["layers"], "hidden_size": cfg["d"],
                  "num_attention_heads": cfg["heads"], "intermediate_size": cfg["ff"], "vocab_size": cfg["vocab"],
                  "max_position_embeddings": cfg["max_pos"], "type_vocab_size": 2,
                  # the zoo's TinyBert is a masked LM: a tied decoder over the vocabulary, loss at every position
                  "architectures": ["BertForMaskedLM"]}
    if case.mode == "infer" and case.gen_len:
        # the analytic workload of the config, with the host dispatch of the zoo's own decoding loop (its ops per
        # generated token, counted as it runs), not Hugging Face's counts: validate times the zoo's generate()
        from advisor.workload import load_workload

        # the zoo's generate() runs the model's plain forward over the prompt: logits at every position
        w = load_workload(config, batch_size=case.batch_size, precision=case.precision, mode="infer",
                          optimizer=None, gen_len=case.gen_len, prefill_logits="all", **kwargs)
        counted = _zoo_decode_ops(case.model, case.precision)
        return dataclasses.replace(w, eager_ops={**w.eager_ops, **counted},
                                   assumptions=(*w.assumptions, f"host dispatch of the validate zoo's own decoding "
                                                f"loop: {counted['prefill']} ops for the prefill, {counted['decode']} "
                                                "per generated token (counted on the meta device)")), {}
    return config, kwargs


@functools.lru_cache(maxsize=16)
def _zoo_decode_ops(model: str, precision: str) -> dict[str, int]:
    """Ops the zoo model's ``generate`` dispatches for the prefill and per generated token (``trace_zoo``)."""
    from advisor.workload.trace_zoo import zoo_decode_ops

    return zoo_decode_ops(model, precision, lambda: _autocast(precision, "cpu"))


def estimate_case(case: Case, card: Any, *, calibration: Any = "auto") -> Any:
    """``advisor.estimate`` of what a validate case runs (:func:`estimator_model`) on ``card``."""
    from advisor.api import estimate

    model, kwargs = estimator_model(case)
    kwargs.update(batch_size=case.batch_size, precision=case.precision, mode=case.mode,
                  gradient_checkpointing=case.gradient_checkpointing,
                  optimizer=case.optimizer if case.mode == "train" else None)
    if case.gen_len:
        kwargs["gen_len"] = case.gen_len
    return estimate(model, card, calibration=calibration, **kwargs)


def estimate_predictor(card: Any, *, calibration: Any = "auto", cpu: bool = False) -> Predictor:
    """Ask ``advisor.estimate`` for the case on ``card`` (a catalog name or a ``GpuSpec``).

    Args:
        card: the card to predict for.
        calibration: passed to ``estimate`` (``"auto"``: the newest stored probe of the card).
        cpu: the card is the local CPU (:func:`cpu_card`): the CUDA context, library workspaces and caching
            allocator's share are left out of the memory, which a CPU process does not have.
    """

    def predict(case: Case, device: DeviceContext) -> Prediction:
        e = estimate_case(case, card, calibration=calibration)
        total = float(e.memory.total_bytes)
        detail = e.memory.to_dict().get("overhead_detail_bytes", {})
        assumptions = list(e.assumptions)
        if cpu:
            memory = total - sum(float(detail.get(k, 0.0)) for k in GPU_ONLY_OVERHEAD)
            assumptions.append("CPU row: predicted memory is the estimate less the CUDA context, library "
                               "workspaces and the CUDA caching allocator's share (a CPU process has none of them)")
        else:
            # torch's allocator (max_memory_reserved) never sees the CUDA context; nvidia-smi does
            memory = total - float(detail.get("cuda_context", 0.0))
            assumptions.append("GPU row: predicted memory compared with max_memory_reserved is the estimate less "
                               "the CUDA context; the estimate's total (nvidia-smi view) is beside NVML's used")
        t = e.time.to_dict()
        step_s = float(e.time.step_s)
        if case.gen_len and t.get("prefill_s") is not None and t.get("decode_step_s") is not None:
            step_s = float(t["prefill_s"]) + case.gen_len * float(t["decode_step_s"])  # the loop timed: prefill + N
        name = card if isinstance(card, str) else card.id
        by_class = dict(t.get("by_class") or {})  # prefill and every generated token included
        return Prediction(memory, step_s, None if cpu else bool(e.memory.fits), bool(e.calibrated),
                          f"estimate(gpu={name})", tuple(assumptions), None if cpu else total, by_class)

    return predict


def cpu_calibration(device: DeviceContext) -> dict[str, float]:
    """Efficiencies for the CPU pseudo-card: its peaks *are* the measured rates, so GEMM and copy run at 1.0."""
    from advisor.estimator.efficiency import HOST_OP_PER_BARE_OP

    cal = {"matmul_fp32": 1.0, "matmul_bf16": 1.0, "memory_bandwidth": 1.0}
    if device.rates.get("op_overhead_s"):
        # the CPU's bare-op time scales to a realistic op's dispatch (both measured on a CPU-only host)
        cal["host_op_s"] = float(device.rates["op_overhead_s"]) * HOST_OP_PER_BARE_OP
    return cal


def default_predictor(case: Case, device: DeviceContext) -> Prediction:
    """``estimate`` for the local card (GPU) or for the CPU pseudo-card; the trace predictor as a fallback."""
    if device.kind == "cuda":
        if not device.catalog_id:
            return trace_predictor()(case, device)
        return estimate_predictor(device.catalog_id)(case, device)
    try:
        return estimate_predictor(cpu_card(device), calibration=cpu_calibration(device), cpu=True)(case, device)
    except (AdvisorError, ImportError) as exc:
        fallback = trace_predictor()(case, device)
        reason = exc.message if isinstance(exc, AdvisorError) else f"{type(exc).__name__}: {exc}"
        return dataclasses.replace(fallback, source=f"{fallback.source}; estimate failed: {reason}")


@contextlib.contextmanager
def _meta_trace() -> Iterator[dict[str, Any]]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    saved: list[Any] = []

    def pack(t: Any) -> Any:
        saved.append(t)
        return t

    result: dict[str, Any] = {"saved": saved}
    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield result
    result["flops"] = float(counter.get_total_flops())


def trace_predictor(build: Builder | None = None) -> Predictor:
    """A fallback predictor of this module's own, for devices and models the estimator cannot take.

    It builds the case's model on torch's ``meta`` device (no memory, no compute) and runs one step
    traced by ``FlopCounterMode`` and a saved-tensors hook:
    time = FLOPs / the device's measured fp32 matmul rate (``rates['matmul_fp32_flops']``; ``None`` on a GPU);
    memory = weights + gradients + optimizer state (bytes per parameter by optimizer) + the tensors
    autograd saves for backward (parameters excluded), or weights + twice the output for inference.

    It is deliberately not ``advisor.workload.trace.trace_module``: that tracer counts activations per storage,
    applies CUDA's autocast lists and has no inference-output term, so this plain "what the run itself saves"
    predictor would move (gpt2-tiny amp-bf16 memory -7.6%, bf16 -9.4%) and lose its inference prediction.
    """

    def predict(case: Case, device: DeviceContext) -> Prediction:
        import torch

        builder = build or default_builder
        with torch.device("meta"):
            built = builder(case, "meta")
            model = built.model
            if case.precision in ("fp16", "bf16"):
                model = model.to(dtype=_dtype(case.precision))
            inputs = built.make_inputs()
        params = list(model.parameters())
        param_ids = {id(p) for p in params}
        n_params = sum(p.numel() for p in params)
        weight_bytes = sum(p.numel() * p.element_size() for p in params)
        if case.mode == "train":
            if case.gradient_checkpointing:
                blocks = built.blocks if built.blocks is not None else find_blocks(model)
                if blocks is not None:
                    enable_checkpointing(blocks)
            with _meta_trace() as trace, _autocast(case.precision, "cpu"):
                loss = built.loss(model(*inputs), inputs)
                loss.backward()
            seen: set[int] = set()
            act = 0
            for t in trace["saved"]:
                base = t._base if t._base is not None else t
                if id(base) in param_ids or id(base) in seen or (t.is_leaf and t.requires_grad):
                    continue
                seen.add(id(base))
                act += base.numel() * base.element_size()
            opt_bytes = optimizer_state_bytes(case.optimizer, case.precision) * n_params
            memory = 2 * weight_bytes + opt_bytes + act
        else:
            with _meta_trace() as trace, torch.no_grad(), _autocast(case.precision, "cpu"):
                out = built.decode(inputs) if case.gen_len and built.decode is not None else model(*inputs)
            memory = weight_bytes + 2 * out.numel() * out.element_size()
        flops = float(trace["flops"])
        rate = device.rates.get("matmul_fp32_flops") if device.kind == "cpu" else None
        step_s = flops / rate if rate and flops else None
        return Prediction(float(memory), step_s, None, False, "trace (meta-device FLOPs / measured matmul rate)",
                          ("time = traced FLOPs / measured dense fp32 matmul rate (no memory-bound term, "
                           "no launch overhead)",
                           "memory = weights + gradients + optimizer state + tensors saved for backward"))

    return predict
