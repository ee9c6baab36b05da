#!/usr/bin/env bash
# Every GPU check of the probe and validate in one call of at most 8 minutes, for a scarce GPU lease:
#
#   OUT=/some/dir bash benchmarks/gpu_session.sh
#
# Stages, in order; each runs under `timeout` (capped by what is left of the 8 minutes) and each runs
# whatever happened to the one before:
#   env          card, driver, torch (nvidia-smi, torch.version)
#   pytest-gpu   pytest --run-gpu -m gpu (real-card tests: kernels free their memory, regions meet their minimum)
#   probe-full   probe --json (saved to the scratch history store: validate's estimates calibrate from it)
#   probe-quick  probe --quick --json --no-save, twice (repeatability; quick vs full bf16 should agree within 3%)
#   int8-kernel  the kernel torch._int_mm runs with a row- vs column-major B (torch.profiler), to the log
#   validate     validate --json --no-save (the zoo), estimates calibrated from the full probe
#   attention    benchmarks/attention_sweep.py: SDPA over sequence lengths, head dims 64/128, causal or not,
#                beside the tile model's predictions (calibrated from the full probe)
#   profile      benchmarks/profile_ops.py: a torch.profiler per-op profile of the validate cases
#
# Writes 8 files to $OUT (default ./gpu-out): session-log.txt, pytest-gpu.txt, probe-full.json,
# probe-quick-1.json, probe-quick-2.json, validate.json, attention-sweep.json, profile-ops.json.  Uses the machine's own Python
# (torch, nvidia-ml-py, rich, pandas); the history store goes to a scratch directory.
set -uo pipefail
out="${OUT:-./gpu-out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 GPU_ADVISOR_HOME="${GPU_ADVISOR_HOME:-$(mktemp -d /tmp/gpu-advisor-home.XXXXXX)}"
py="${PYTHON:-python3}"
budget_s="${BUDGET_S:-470}"   # 8 minutes, less a margin for the device tool's own start and transfer
start_s=$SECONDS
log="$out/session-log.txt"
: > "$log"

# stage NAME CAP_S COMMAND...: COMMAND under timeout min(CAP_S, budget left); its output and rc/wall go to the log.
stage() {
  local name="$1" cap="$2"
  shift 2
  local left=$(( budget_s - (SECONDS - start_s) ))
  if (( left < 15 )); then
    echo "== $name skipped: the session's ${budget_s}s are used up" | tee -a "$log"
    return 0
  fi
  local limit=$(( cap < left ? cap : left ))
  local t0=$SECONDS
  echo "== $name $(date -u +%H:%M:%S) (limit ${limit}s)" | tee -a "$log"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "== $name rc=$rc wall=$(( SECONDS - t0 ))s$( (( rc == 124 || rc == 137 )) && echo ' (timed out)')" | tee -a "$log"
  return 0
}

stage env 30 bash -c "nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current,power.limit,clocks.max.sm,clocks.max.mem --format=csv; \
  $py -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0))'"
stage pytest-gpu 150 bash -c "$py -m pytest -q --run-gpu -m gpu tests -p no:cacheprovider > '$out/pytest-gpu.txt' 2>&1; \
  rc=\$?; tail -8 '$out/pytest-gpu.txt'; exit \$rc"
stage probe-full 120 bash -c "$py -m advisor probe --json --out '$out/probe-full.json' > /dev/null"
for i in 1 2; do
  stage "probe-quick-$i" 60 bash -c "$py -m advisor probe --quick --no-save --json --out '$out/probe-quick-$i.json' > /dev/null"
done
stage summary 20 "$py" - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def best(name, precision):
    path = out / name
    if not path.exists():
        return None
    ks = [k for k in json.loads(path.read_text())["kernels"] if k["name"] == "matmul" and k["precision"] == precision
          and k["value"] is not None]
    return max(ks, key=lambda k: k["value"], default=None)
full = best("probe-full.json", "bf16")
for i in (1, 2):
    q = best(f"probe-quick-{i}.json", "bf16")
    if full and q:
        print(f"bf16 best: full {full['value']:.1f} at {full['shape']}, quick-{i} {q['value']:.1f} at {q['shape']} "
              f"({q['value'] / full['value'] - 1:+.1%}; goal within 3%)")
if (out / "probe-full.json").exists():
    doc = json.loads((out / "probe-full.json").read_text())
    for k in doc["kernels"]:
        if k["name"] in ("conv2d", "matmul") and k["precision"] in ("fp32", "int8") and (k["error"] or k["skipped"]):
            print(k["name"], k["precision"], k["shape"], "->", k["error"] or k["skipped"])
    print("efficiencies:", {d: {x: v for x, v in e.items() if x in ("launch_overhead_s", "host_dispatch_s_per_op",
                                                                     "host_backward_s_per_op",
                                                                     "matmul_bf16", "conv_fp32", "matmul_int8")}
                            for d, e in (doc.get("efficiencies") or {}).items()})
    print("verdicts:", [(v["severity"], v["code"]) for v in doc["verdicts"]])
PY
stage int8-kernel 30 "$py" - <<'PY'
# Which kernel torch._int_mm runs, row-major vs column-major B (pytorch/pytorch#165230): the probe now passes
# B column-major; a tensor-core kernel name (e.g. sm90_xmma / cutlass ... imma / i8816) says the int8 units ran.
import torch
from torch.profiler import ProfilerActivity, profile
a = torch.randint(-64, 64, (4096, 4096), dtype=torch.int8, device="cuda")
for label, b in (("row-major B", torch.randint(-64, 64, (4096, 4096), dtype=torch.int8, device="cuda")),
                 ("column-major B", torch.randint(-64, 64, (4096, 4096), dtype=torch.int8, device="cuda").t())):
    torch._int_mm(a, b); torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            torch._int_mm(a, b)
        torch.cuda.synchronize()
    top = sorted(prof.key_averages(), key=lambda e: -getattr(e, "self_device_time_total", 0))[:2]
    for e in top:
        us = getattr(e, "self_device_time_total", 0) / max(e.count, 1)
        print(f"{label}: {e.key[:120]}  {us:.0f} us/call = {2 * 4096**3 / us / 1e6:.0f} TOP/s")
PY
stage validate 200 bash -c "$py -m advisor validate --no-save --json > '$out/validate.json'"
stage attention 60 "$py" benchmarks/attention_sweep.py --out "$out/attention-sweep.json" \
  --calibration "$out/probe-full.json"
stage profile 200 "$py" benchmarks/profile_ops.py --out "$out/profile-ops.json" \
  --new-first tests/data/gpu-runs/h200-2026-11-28/profile-ops.json
echo "== done in $(( SECONDS - start_s ))s; files: $(ls "$out" | tr '\n' ' ')" | tee -a "$log"
