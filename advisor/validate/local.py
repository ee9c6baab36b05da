"""The local device: what `validate` runs on, and the CPU rates a CPU prediction needs."""

from __future__ import annotations

import contextlib
import operator
import os
import platform
from collections.abc import Callable
from functools import partial
from typing import Any

from advisor.device import CudaDevice
from advisor.errors import AdvisorError
from advisor.probing.cpu import host_memory_bytes
from advisor.validate.records import DeviceContext
from advisor.validate.runner import cpu_memory_method


def _median_time(fn: Callable[[], Any], iters: int) -> float:
    """Median seconds per call of ``fn``, timed by the probe's loop (warm-up until settled, >= 5 ms regions)."""
    from advisor.probing.timing import measure

    return measure(fn, repetitions=max(iters, 5), min_region_s=5e-3, warmup_max_s=0.5).median_s


def measure_cpu_rates(n: int = 512) -> dict[str, float]:
    """Quick CPU rates for the CPU predictor (about a second).

    ``matmul_fp32_flops`` / ``matmul_bf16_flops``: median of n^3 (bf16: (n/2)^3) products; ``memory_copy_bytes_s``:
    a 64 MiB copy (read + write counted); ``op_overhead_s``: an eager add on one element (dispatch cost).
    """
    import torch

    out: dict[str, float] = {}
    # bf16 at half the side: CPUs without bf16 matrix units run it 10-20x slower than fp32
    for precision, dtype, side in (("fp32", torch.float32, n), ("bf16", torch.bfloat16, n // 2)):
        a, b = torch.randn(side, side, dtype=dtype), torch.randn(side, side, dtype=dtype)
        out[f"matmul_{precision}_flops"] = 2 * side**3 / _median_time(partial(operator.matmul, a, b), 5)
    src = torch.ones(16 * 2**20)
    dst = torch.empty_like(src)
    out["memory_copy_bytes_s"] = 2 * src.numel() * 4 / _median_time(lambda: dst.copy_(src), 6)
    one = torch.ones(1)
    out["op_overhead_s"] = _median_time(lambda: [one + one for _ in range(200)], 5) / 200
    return out


def _stored_cpu_rates() -> tuple[dict[str, float], str] | None:
    """Rates from the newest CPU probe in the history store, when one measured them all."""
    try:
        from advisor.store import HistoryStore

        records = HistoryStore().list_probes(limit=20)
    except (ImportError, AdvisorError):
        return None
    for record in records:
        doc = record.document
        devices = doc.get("devices") or []
        if not devices or devices[0].get("kind") != "cpu":
            continue
        rates: dict[str, float] = {}
        for k in doc.get("kernels") or []:
            value, name, prec = k.get("value"), k.get("name"), k.get("precision")
            if value is None or k.get("skipped") or k.get("error"):
                continue
            if name == "matmul" and prec in ("fp32", "bf16"):
                key = f"matmul_{prec}_flops"
                rates[key] = max(rates.get(key, 0.0), float(value) * 1e12)
            elif name == "memory_copy":
                rates["memory_copy_bytes_s"] = max(rates.get("memory_copy_bytes_s", 0.0), float(value) * 1e9)
            elif name == "launch":
                rates["op_overhead_s"] = float(value) * 1e-6
        if {"matmul_fp32_flops", "memory_copy_bytes_s"} <= set(rates):
            return rates, f"the CPU probe saved at {record.timestamp} (history store id {record.id})"
    return None


def local_device(*, prefer_cuda: bool = True, use_store: bool = False) -> DeviceContext:
    """Describe the device validate runs on: the first CUDA GPU if torch sees one, else the CPU.

    On a GPU the catalog card comes from the probe's inventory (NVML name) when the probe is there, else
    from torch's device name.  The inventory device is the one whose UUID matches torch's device 0 (NVML's
    numbering ignores ``CUDA_VISIBLE_DEVICES``: its device 0 may be another card).

    On the CPU the predictor's rates are measured now (:func:`measure_cpu_rates`,
    about a second, under the same load as the steps); ``use_store=True`` takes them from the newest CPU
    probe in the history store instead (a CPU's rates drift with its load, so a stale probe misleads).
    """
    import torch

    from advisor.catalog import find_gpu, load_specs
    from advisor.device import cuda_runtime, nvml_index_for

    runtime = cuda_runtime() if prefer_cuda else None
    if runtime is not None and runtime.is_available():
        name = runtime.name(0)
        catalog_id, driver, nvml_index = None, None, None
        try:  # the probe's inventory is optional here: torch's name is enough
            from advisor.probing import default_backend

            backend = default_backend()
        except AdvisorError:
            backend = None
        if backend is not None:
            try:
                nvml_index = nvml_index_for(0, runtime, backend) if backend.name != "cpu" else None
                if nvml_index is not None:
                    info = backend.device_info(nvml_index)
                    catalog_id, driver = info.catalog_id, info.driver_version
                    name = info.name or name
            except AdvisorError:
                nvml_index = None
            finally:
                backend.close()
        if catalog_id is None:
            with contextlib.suppress(AdvisorError):
                catalog_id = find_gpu(name, load_specs()).id
        return DeviceContext("cuda", name, catalog_id, torch.__version__,
                             f"driver {driver}, CUDA {torch.version.cuda}" if driver else f"CUDA {torch.version.cuda}",
                             memory_method="torch.cuda.max_memory_reserved after reset_peak_memory_stats "
                                           "(allocated and NVML used memory alongside)",
                             device=CudaDevice(0, nvml_index=nvml_index, runtime=runtime))
    stored = _stored_cpu_rates() if use_store else None
    if stored is not None:
        rates, source = stored
    else:
        rates = measure_cpu_rates()
        source = "measured by validate: 512^3 fp32 / 256^3 bf16 matmuls, a 64 MiB copy, 1-element adds"
    ram, _available = host_memory_bytes()
    if ram:
        rates["memory_bytes"] = float(ram)
    cpu = platform.processor() or platform.machine()
    return DeviceContext("cpu", f"{cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)", None,
                         torch.__version__, None, cpu_memory_method(), rates, source)
