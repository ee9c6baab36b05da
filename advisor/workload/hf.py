"""Configs the analytic path does not know (``vit``, ``opt``, ...): built with ``transformers`` and traced.

As Accelerate's ``estimate-memory`` does, the model is instantiated from its config on PyTorch's
``meta`` device (shapes only: no memory, no weights, no download), then traced on fake tensors by
``advisor.workload.trace.trace_module`` like any ``nn.Module``.  Needs the optional extra ``hf``
(``pip install 'gpu-advisor[hf]'``: transformers).  Traces are cached on disk
(``advisor.workload.tracecache``), keyed by the config, the shapes and the transformers version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from advisor.errors import WorkloadError
from advisor.workload.base import Workload

INSTALL_HINT = "pip install 'gpu-advisor[hf]' (transformers)"
#: Build options the traced path cannot apply (the analytic transformer path models them).
_ANALYTIC_ONLY = ("lora_rank", "lora_targets", "quantize_base", "gen_len")


#: Keys that give a model's size; a config with none of them would be transformers' defaults, not the user's model.
_SIZE_KEYS = ("hidden_size", "d_model", "n_embd", "embed_dim", "dim", "hidden_sizes", "num_hidden_layers",
              "num_layers", "n_layer", "depths", "encoder_layers", "decoder_layers")


def has_sizes(cfg: Mapping[str, Any]) -> bool:
    """Whether ``cfg`` states the model's size (else building it would measure transformers' default model)."""
    return any(k in cfg for k in _SIZE_KEYS)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return transformers


def from_hf_config(cfg: Mapping[str, Any], name: str, *, batch_size: int = 1, seq_len: int | None = None,
                   image_size: int | None = None, mode: str = "train", precision: str = "amp-bf16",
                   optimizer: str | None = "adamw", gradient_checkpointing: bool = False, grad_accum: int = 1,
                   attention: str | None = None, **options: Any) -> Workload:
    """One step of the model ``cfg`` describes, built with transformers on the meta device and traced.

    Raises:
        WorkloadError: transformers missing (with the install hint), a model type transformers does not know,
            an input kind not supported (audio), an option only the analytic path models, or a trace failure.
    """
    model_type = str(cfg.get("model_type"))
    bad = [k for k in _ANALYTIC_ONLY if options.get(k) is not None]
    if bad or gradient_checkpointing:
        what = ", ".join(bad + (["gradient_checkpointing"] if gradient_checkpointing else []))
        raise WorkloadError(f"{what} cannot be applied to {name!r} ({model_type}: built with transformers and "
                            "traced, not modelled analytically)",
                            "estimate it without them, or use a model type the analytic path knows")
    unknown = set(options) - set(_ANALYTIC_ONLY)
    if unknown:
        raise WorkloadError(f"unknown option(s) {', '.join(sorted(unknown))}")

    def build(b: int) -> Workload:
        return _build_and_trace(cfg, name, b, seq_len=seq_len, image_size=image_size, mode=mode,
                                precision=precision, optimizer=optimizer, grad_accum=grad_accum)

    from advisor.workload.tracecache import cached_build

    # The key holds what the user gave; everything derived from it (class, shapes) follows from the config and
    # the transformers version, which the cache's code fingerprint includes.  A hit imports neither torch nor
    # transformers.
    key = {"config": dict(cfg), "name": name, "seq_len": seq_len, "image_size": image_size, "mode": mode,
           "precision": precision, "optimizer": optimizer, "grad_accum": grad_accum}
    return cached_build("hf-config", key, batch_size, build,
                        f"building {name} ({model_type}) with transformers and tracing it (once; cached)")


def _build_and_trace(cfg: Mapping[str, Any], name: str, batch: int, *, seq_len: int | None, image_size: int | None,
                     mode: str, precision: str, optimizer: str | None, grad_accum: int) -> Workload:
    model_type = str(cfg.get("model_type"))
    try:
        transformers = _transformers()
    except ImportError as exc:
        from advisor.workload.config import MODEL_TYPES

        raise WorkloadError(f"unsupported model_type {model_type!r} in config {name!r}: it has no analytic model "
                            "here, and building it from its config needs transformers, which is not installed",
                            f"{INSTALL_HINT}; analytic model types: {', '.join(sorted(MODEL_TYPES))}; or pass "
                            "the torch module with example_inputs") from exc
    import torch

    from advisor.workload.trace import trace_module

    config = _hf_config(transformers, cfg, name)
    cls = _model_class(transformers, cfg, config)
    main_input = getattr(cls, "main_input_name", "input_ids")
    kwargs: dict[str, Any] = {}
    if main_input == "pixel_values":
        if seq_len is not None:
            raise WorkloadError(f"seq_len does not apply to {name!r} (a vision model)", "use image_size")
        size = image_size or _as_int(getattr(config, "image_size", None)) or 224
        channels = _as_int(getattr(config, "num_channels", None)) or 3
        family = "vit" if any(k in model_type for k in ("vit", "deit", "swin", "beit")) else "cnn"
        with torch.device("meta"):
            x = torch.empty(batch, channels, size, size)
        shape: dict[str, Any] = {"image_size": size}
    elif main_input == "input_ids":
        if image_size is not None:
            raise WorkloadError(f"image_size does not apply to {name!r} (a text model)", "use seq_len")
        from advisor.workload.presets import context_limit

        seq = seq_len or min(context_limit(dict(cfg)) or 512, 2048)
        family = ("encoder-decoder" if getattr(config, "is_encoder_decoder", False) else
                  "decoder" if cls.__name__.endswith("ForCausalLM") or getattr(config, "is_decoder", False)
                  else "encoder")
        with torch.device("meta"):
            x = torch.empty(batch, seq, dtype=torch.long)
            if family == "encoder-decoder":
                kwargs["decoder_input_ids"] = torch.empty(batch, seq, dtype=torch.long)
        shape = {"seq_len": seq}
    else:
        raise WorkloadError(f"{name!r} takes {main_input!r} inputs (audio or other): not supported for tracing",
                            "pass the torch module with example_inputs")
    model = _build(cls, config)
    w = trace_module(model, (x,), example_kwargs=kwargs, mode=mode, precision=precision, optimizer=optimizer,
                     name=name, family=family, grad_accum=grad_accum, **shape)
    note = (f"{name}: model_type {model_type!r} has no analytic model; built from its config with transformers "
            f"{transformers.__version__} ({cls.__name__}) on the meta device (no weights) and traced on fake "
            "tensors, as Accelerate's estimate-memory does")
    return dataclasses.replace(w, source="config", assumptions=(note, *w.assumptions))


def _as_int(value: Any) -> int | None:
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _hf_config(transformers: Any, cfg: Mapping[str, Any], name: str) -> Any:
    kwargs = {k: v for k, v in cfg.items() if k not in ("model_type", "transformers_version", "_name_or_path")}
    try:
        return transformers.AutoConfig.for_model(str(cfg.get("model_type")), **kwargs)
    except (ValueError, KeyError) as exc:
        raise WorkloadError(f"transformers {transformers.__version__} does not know model_type "
                            f"{cfg.get('model_type')!r} of {name!r}: {exc}",
                            "upgrade transformers, or pass the torch module with example_inputs") from exc


def _model_class(transformers: Any, cfg: Mapping[str, Any], config: Any) -> Any:
    """The class the config names (``architectures``: with its task head), else the bare ``AutoModel`` one.

    Only a model class is taken: a name in ``architectures`` is looked up in transformers' namespace when it is a
    plain class name, and what it names must be a ``PreTrainedModel`` subclass (not a function, a pipeline or a
    trainer, which a config must never get to call).

    Raises:
        WorkloadError: ``architectures`` is not a list of names, or names something in transformers that is not
            a model class.
    """
    names = cfg.get("architectures") or ()
    if not isinstance(names, (list, tuple)):
        raise WorkloadError(f"the config's architectures is {str(names)[:60]!r}, not a list of model class names",
                            'e.g. "architectures": ["LlamaForCausalLM"]')
    for arch in names:
        if not isinstance(arch, str) or not arch.isidentifier() or arch.startswith("_") or len(arch) > 100:
            raise WorkloadError(f"the config's architectures entry {str(arch)[:60]!r} is not a model class name",
                                'e.g. "architectures": ["LlamaForCausalLM"]')
        cls = getattr(transformers, arch, None)
        if cls is None:
            continue  # a class this transformers does not have: the AutoModel class below
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise WorkloadError(f"the config's architectures entry {arch!r} names a transformers "
                                f"{type(cls).__name__}, not a model class",
                                "architectures lists model classes, e.g. LlamaForCausalLM; remove the entry to build "
                                "the bare AutoModel")
        return cls
    try:
        return transformers.AutoModel._model_mapping[type(config)]
    except (KeyError, AttributeError) as exc:
        raise WorkloadError(f"transformers has no model class for {type(config).__name__}",
                            "add an 'architectures' entry to the config, or pass the torch module") from exc


def _build(cls: Any, config: Any) -> Any:
    import torch

    try:
        with torch.device("meta"):
            return cls(config)
    except Exception as exc:  # a model's own __init__ failing on this config
        raise WorkloadError(f"transformers could not build {cls.__name__} from the config: {type(exc).__name__}: "
                            f"{exc}", "check the config.json, or pass the torch module with example_inputs") from exc


#: The auto class whose model a named transformer without ``architectures`` is, by the closed form's kind: the
#: closed form prices a decoder and an encoder-decoder with their LM heads, a bare encoder (BertModel) as it is.
_AUTO_CLASS = {"decoder": "AutoModelForCausalLM", "encoder-decoder": "AutoModelForSeq2SeqLM", "encoder": "AutoModel"}


def _door_class(transformers: Any, cfg: Mapping[str, Any], config: Any, kind: str) -> Any:
    """The class ``architectures`` names, else the auto class of the closed form's kind (``_AUTO_CLASS``)."""
    if cfg.get("architectures"):
        return _model_class(transformers, cfg, config)
    try:
        return getattr(transformers, _AUTO_CLASS[kind])._model_mapping[type(config)]
    except (KeyError, AttributeError) as exc:
        raise WorkloadError(f"transformers has no {_AUTO_CLASS[kind]} class for {type(config).__name__}",
                            "add an 'architectures' entry to the config, or use door='closed'") from exc


def trace_named_module(cfg: Mapping[str, Any], name: str, kind: str, *, batch: int, seq: int, mode: str,
                       precision: str, optimizer: str | None, gradient_checkpointing: bool,
                       grad_accum: int) -> Workload:
    """The trace door (``advisor.workload.door``): a named transformer's module built and one step traced.

    As ``benchmarks/conformance.py``'s ``traced``: the meta device, the loss the model computes from labels,
    transformers' own gradient checkpointing.  ``kind``: the closed form's kind of ``cfg``, which picks the class when
    the config names none (``_AUTO_CLASS``).
    """
    try:
        transformers = _transformers()
    except ImportError as exc:
        raise WorkloadError(f"door='trace' builds {name!r} with transformers, which is not installed",
                            f"{INSTALL_HINT}, or use door='closed' (the default)") from exc
    import torch

    from advisor.workload.trace import trace_module

    config = _hf_config(transformers, cfg, name)
    cls = _door_class(transformers, cfg, config, kind)
    model = _build(cls, config)
    train = mode == "train"
    if gradient_checkpointing and train:
        # transformers 5 renamed it activation_checkpointing_enable (the old name warns)
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    with torch.device("meta"):
        x = torch.empty(batch, seq, dtype=torch.long)
    kwargs: dict[str, Any] = {}
    takes_labels = kind != "encoder" or cls.__name__.endswith(("ForMaskedLM", "ForPreTraining"))
    if train and takes_labels:
        kwargs["labels"] = x
    elif kind == "encoder-decoder":
        kwargs["decoder_input_ids"] = x
    w = trace_module(model, (x,), example_kwargs=kwargs, mode=mode, precision=precision,
                     optimizer=optimizer if train else None, name=name, family=kind, grad_accum=grad_accum,
                     seq_len=seq, step_loss=(lambda out, _inputs: out.loss) if train and takes_labels else None)
    note = (f"door=trace: {name} built from its config with transformers {transformers.__version__} "
            f"({cls.__name__}) on the meta device (no weights) and one step traced on fake tensors"
            + (" with the loss it computes from labels" if train and takes_labels else "")
            + ("; transformers' own gradient checkpointing" if gradient_checkpointing and train else ""))
    return dataclasses.replace(w, assumptions=(note, *w.assumptions))
