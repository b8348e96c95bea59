#!/usr/bin/env bash
# The one prepared GPU session (device tool): airbench94 against the reference, the harness against
# torch.utils.benchmark on CUDA + the latency predictor's error, and training throughput on CUDA.
# Expects .gpu/wheels (hydra-core, omegaconf, antlr4, lark, airbench==0.1.8) and .gpu/cifar10-jpeg.tar.xz carried
# with the call; writes logs and JSON to $OUT. Each part has its own time limit so a slow one cannot eat the rest.
set -u
OUT=${OUT:-build/gpu_out}; mkdir -p "$OUT"
export AUTOML_SHARED_DATA=$PWD/.gpu AUTOML_CODEGEN_CACHE=/tmp/automl-cache PYTHONPATH=$PWD
python3 -m pip install -q --no-deps --no-index .gpu/wheels/*.whl 2>&1 | tail -2
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
timeout "${AIRBENCH_S:-180}" python3 bench/airbench_gpu.py --archive .gpu/cifar10-jpeg.tar.xz --work /tmp/airbench \
    --runs 3 --variant fp16-pure= --variant fp16-pure+compile=compile=true > "$OUT/airbench.log" 2>&1
cp /tmp/airbench/airbench_results.json "$OUT/" 2>/dev/null
timeout "${PREDICTOR_S:-130}" python3 bench/predictor_gpu.py --out /tmp/pred --accuracy-budget 40 --archs 50 \
    --model-min-time 0.1 --op-min-time 0.005 > "$OUT/predictor.log" 2>&1
cp /tmp/pred/*.json "$OUT/" 2>/dev/null
timeout "${THROUGHPUT_S:-40}" python3 bench/train_throughput.py --device cuda --steps 60 --batch-size 512 --repeats 3 \
    > "$OUT/throughput.log" 2>&1
for f in airbench predictor throughput; do echo "=== $f"; tail -n 25 "$OUT/$f.log"; done
ls -la "$OUT"
