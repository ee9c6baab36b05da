#!/usr/bin/env bash
# The GPU checks of issues 3 (probe) and 7 (validate), batched for a scarce GPU lease.
#
#   bash benchmarks/gpu_session.sh probe     # ~4-6 min: inventory + full probe, 2 quick probes (timing and
#                                            #   repeatability), the brute-force bf16 sweep, pytest --run-gpu
#   bash benchmarks/gpu_session.sh validate  # ~5-9 min: the validate zoo on the GPU, then --calibrate
#
# Every result lands in $OUT (default ./gpu-out): at most 8 files, as the device tool brings back.
# Uses the machine's own Python (torch, nvidia-ml-py, rich, pandas; no streamlit/altair needed: those
# imports are lazy).  The history store goes to a scratch directory so nothing is mixed with a user's.
set -uo pipefail
stage="${1:-probe}"
out="${OUT:-./gpu-out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 GPU_ADVISOR_HOME="${GPU_ADVISOR_HOME:-/tmp/gpu-advisor-home}"
py="${PYTHON:-python3}"

case "$stage" in
probe)
  {
    nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current,power.limit,clocks.max.sm,clocks.max.mem --format=csv
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    echo "== full probe"; /usr/bin/time -f "full probe wall %e s" "$py" -m advisor probe --json --out "$out/probe-full.json" >/dev/null
    for i in 1 2; do
      echo "== quick probe $i"; /usr/bin/time -f "quick probe wall %e s" "$py" -m advisor probe --quick --json --out "$out/probe-quick-$i.json" >/dev/null
    done
    echo "== brute-force bf16 sweep"; "$py" benchmarks/bench_probe.py --sweep
    echo "== eager host cost (the estimator's host_op_s): the probe's launch figure"
    "$py" - "$out/probe-full.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
for dev, eff in (doc.get("efficiencies") or {}).items():
    print(dev, {k: v for k, v in eff.items() if k in ("launch_overhead_s", "matmul_bf16", "memory_bandwidth", "h2d_pinned")})
EOF
  } 2>&1 | tee "$out/probe-log.txt"
  "$py" -m pytest -q --run-gpu -m gpu tests -p no:cacheprovider 2>&1 | tee "$out/pytest-gpu.txt"
  ;;
validate)
  {
    # a probe of this card in the (scratch) history store first: estimates calibrate from it, as a user's would
    "$py" -m advisor probe --quick --json --out "$out/probe-before-validate.json" >/dev/null
    /usr/bin/time -f "validate wall %e s" "$py" -m advisor validate --json > "$out/validate.json"
    "$py" -m advisor validate --models gpt2 llama-small --calibrate --json > "$out/validate-calibrate.json"
  } 2>&1 | tee "$out/validate-log.txt"
  ;;
*)
  echo "usage: $0 probe|validate" >&2
  exit 2
  ;;
esac
