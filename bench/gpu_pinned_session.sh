#!/usr/bin/env bash
# The second prepared GPU run for issue 5 (one device call, about 4-5 minutes). The first run
# (bench/gpu_profile_session.sh) found launch-bound timings on the GPU machine switching between a fast and a slow
# level (run-to-run spread 15-60 % for both our harness and torch's Timer), and op-table entries of one op type
# differing 1.5x in host time. This run asks whether the host is the cause and whether pinning the timing thread
# to one core (Settings.cpu, --cpu) steadies it:
#   1. bench/host_noise.py: kernel-issue and pure-Python speed, free vs pinned, alternating 0.4 s slices;
#   2. harness vs Timer on the launch-bound cases (batch 1; airbench94 and resnet20 also 256), pinned, then free;
#   3. the predictor over 50 mobilenet-space networks at batch 1 and 64, pinned, networks measured twice (min).
# Run with the device tool: command `bash bench/gpu_pinned_session.sh`, carry [".gpu/wheels"] (see
# bench/gpu_profile_session.sh for the wheels). Everything lands in one archive, $OUT/gpu_results.tgz.
set -u
FINAL=${OUT:-build/gpu_out}; OUT=$FINAL/r; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .gpu/wheels/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
CPU=$(python3 -c "import os; c = sorted(os.sched_getaffinity(0)); print(c[min(2, len(c) - 1)])")
{ nvidia-smi --query-gpu=name,driver_version --format=csv; nvidia-smi topo -m; nproc; echo "pinned cpu $CPU"
  grep -m1 "model name" /proc/cpuinfo; } > "$OUT/machine.txt" 2>&1
timeout "${NOISE_S:-30}" python3 bench/host_noise.py --cpu "$CPU" --seconds 8 --json "$OUT/host_noise.json" \
    > "$OUT/host_noise.log" 2>&1
ACC="bench/profile_accuracy.py --device cuda --dtype fp16 --channels-last --repeats 9 --min-time 0.15"
for mode in pinned free; do
  pin=""; [ "$mode" = pinned ] && pin="--cpu $CPU"
  { timeout "${ACC_S:-55}" python3 $ACC $pin --examples airbench94,resnet20 --batch-sizes 1,256 \
        --json "$OUT/acc_${mode}_a.json"
    timeout "${ACC_S:-55}" python3 $ACC $pin --examples resnet18,resnet50,efficientnet_b0,mobilenet_v2,densenet121 \
        --batch-sizes 1 --json "$OUT/acc_${mode}_b.json"; } > "$OUT/acc_$mode.log" 2>&1
done
timeout "${PREDICTOR_S:-220}" python3 bench/predictor_gpu.py --out "$OUT/pred" --skip-accuracy --archs 50 \
    --model-min-time 0.1 --op-min-time 0.005 --model-rounds 2 --cpu "$CPU" > "$OUT/predictor.log" 2>&1
cat "$OUT/machine.txt"
for f in host_noise acc_pinned acc_free predictor; do echo "=== $f"; grep -v "^W1\|warn" "$OUT/$f.log" | tail -n 16; done
tar czf "$FINAL/gpu_results.tgz" -C "$FINAL" r && rm -rf "$OUT"
