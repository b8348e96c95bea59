#!/usr/bin/env bash
# The prepared GPU run for the profiling checks (issue 5), one call of the device tool, about 5 minutes:
#   1. harness vs torch.utils.benchmark.Timer on CUDA, batch 1 and 256, fp16 channels_last, all seven examples,
#      the ones not yet within 3 % first (airbench94, resnet20, resnet18, resnet50), then airbench94 once more
#      timing every call with its own event pair (--block-time 0: the harness before block timing), to show the
#      effect of blocks on a launch-bound network;
#   2. the latency predictor over 50 random samples of the mobilenet space at batch 1 and 64: the shipped
#      overlap rule (max of summed host and device times) next to the sum of isolated op latencies.
# Prepare on the dev machine (the GPU machine has no network and lacks lark/omegaconf):
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 --platform any \
#       --no-deps -d .gpu/wheels lark==1.3.1 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 jinja2 markupsafe
# and run with the device tool: command `bash bench/gpu_profile_session.sh`, carry [".gpu"]. Writes to $OUT.
set -u
FINAL=${OUT:-build/gpu_out}; OUT=$FINAL/r; mkdir -p "$OUT"  # packed into one file at the end (the tool returns <= 8)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .gpu/wheels/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
ACC="bench/profile_accuracy.py --device cuda --batch-sizes 1,256 --dtype fp16 --channels-last --repeats 5 --min-time 0.3"
timeout "${ACCURACY_S:-150}" python3 $ACC --examples airbench94,resnet20,resnet18,resnet50 \
    --json "$OUT/accuracy_first.json" > "$OUT/accuracy_first.log" 2>&1
timeout "${OLD_S:-40}" python3 $ACC --examples airbench94 --block-time 0 \
    --json "$OUT/accuracy_airbench_unblocked.json" > "$OUT/accuracy_airbench_unblocked.log" 2>&1
timeout "${PREDICTOR_S:-150}" python3 bench/predictor_gpu.py --out "$OUT/pred" --skip-accuracy --archs 50 \
    --model-min-time 0.1 --op-min-time 0.005 > "$OUT/predictor.log" 2>&1
timeout "${REST_S:-90}" python3 $ACC --examples densenet121,efficientnet_b0,mobilenet_v2 \
    --json "$OUT/accuracy_rest.json" > "$OUT/accuracy_rest.log" 2>&1
# the one test CI cannot run (CUDA profiler cache), and the CUDA paths of the profiler tests
timeout "${TESTS_S:-60}" python3 -m pytest -q -p no:cacheprovider tests/test_profiler.py > "$OUT/tests.log" 2>&1
for f in accuracy_first accuracy_airbench_unblocked predictor accuracy_rest tests; do echo "=== $f"; tail -n 16 "$OUT/$f.log"; done
tar czf "$FINAL/gpu_results.tgz" -C "$FINAL" r && rm -rf "$OUT"
