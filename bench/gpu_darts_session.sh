#!/usr/bin/env bash
# The prepared GPU session for DARTS on NAS-Bench-201 (bench/darts_nb201.py --device cuda): the benchmark's full
# supernet (16 channels, 5 cells per stage) on the 45,000 training images of the JPEG CIFAR-10, the shipped default
# variant, seeds 0-2, each under its own time limit so that the whole session stays under about 8 minutes of device
# time (SEED_S per seed, default 140 s; EPOCHS, default 8). A seed cut by its limit is reported as failed; rerun
# with fewer EPOCHS. Results (JSON, logs) go to $OUT.
# Carry with the call (device tool, carry=[".gpu"]): .gpu/wheels (hydra-core, omegaconf, antlr4-python3-runtime,
# lark, jinja2 if missing there) and .gpu/cifar10-jpeg.tar.xz and .gpu/nb201-cifar10.csv copied from ../shared/data.
#   run(command="bash bench/gpu_darts_session.sh", carry=[".gpu"], timeout_s=560)
set -u
OUT=${OUT:-build/gpu_darts_out}; mkdir -p "$OUT"
export AUTOML_SHARED_DATA=$PWD/.gpu AUTOML_CODEGEN_CACHE=/tmp/automl-cache PYTHONPATH=$PWD PYTHONUNBUFFERED=1
ls .gpu/wheels/*.whl >/dev/null 2>&1 && python3 -m pip install -q --no-deps --no-index .gpu/wheels/*.whl 2>&1 | tail -2
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
VARIANT=${VARIANT:-default}
for seed in ${SEEDS:-0 1 2}; do
  timeout "${SEED_S:-140}" python3 bench/darts_nb201.py --device cuda --variants "$VARIANT" --seeds "$seed" \
      --table .gpu/nb201-cifar10.csv --work /tmp/darts_nb201 --json "$OUT/darts_nb201_seed$seed.json" \
      "search.epochs=${EPOCHS:-8}" > "$OUT/seed$seed.log" 2>&1
  echo "=== seed $seed (exit $?)"; tail -n 4 "$OUT/seed$seed.log"
  cat /tmp/darts_nb201/cuda/$VARIANT/seed$seed.log >> "$OUT/seed$seed.log" 2>/dev/null  # the search's own log
done
ls -la "$OUT"
