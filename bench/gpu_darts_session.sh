#!/usr/bin/env bash
# The prepared GPU session for DARTS on NAS-Bench-201 (bench/darts_nb201.py --device cuda): the benchmark's full
# supernet (16 channels, 5 cells per stage) on the 45,000 training images of the JPEG CIFAR-10, the shipped default
# variant, seeds 0-2, each under its own time limit so that the whole session stays under about 8 minutes of device
# time (SEED_S per seed, default 140 s; EPOCHS, default 8). A seed cut by its limit is reported as failed; rerun
# with fewer EPOCHS. Results (JSON, logs) go to $OUT.
#
# Prepare on the dev machine, once per checkout (the GPU machine has no network, lacks hydra-core/omegaconf/antlr4/
# lark, and does not see ../shared):
#   bash bench/gpu_darts_session.sh prepare      # gpu_cifar10_session.sh's wheels and data, and the NB201 table
# then run with the device tool: command `bash bench/gpu_darts_session.sh`, carry [".gpu"], timeout_s 560.
# Dry run on a CPU (every step of the script, the full-size supernet, a few images, one epoch):
#   OUT=/tmp/gpu_darts_dry SEEDS=0 EPOCHS=1 bash bench/gpu_darts_session.sh search.device=cpu dataset.max_per_class=10
# Arguments after the script name are overrides for every run (they come after the cuda setting's, so they win).
# ALSO="pt_naswot_tuned ..." re-derives each seed's trained supernet with those variants too (--supernets-from:
# derivation only, ALSO_S seconds each, default 60), e.g. fine-tuning between decisions; off by default (budget).
set -u
if [ "${1:-}" = prepare ]; then
    set -e
    bash bench/gpu_cifar10_session.sh prepare
    cp -u ../shared/data/nb201-cifar10.csv .gpu/
    exit 0
fi
OUT=${OUT:-build/gpu_darts_out}; mkdir -p "$OUT"
WORK=/tmp/darts_nb201; rm -rf "$WORK"
source bench/gpu_env.sh "$OUT"   # wheels, data, machine.txt
TABLE=.gpu/nb201-cifar10.csv; [ -f "$TABLE" ] || TABLE=../shared/data/nb201-cifar10.csv
VARIANT=${VARIANT:-default}
for seed in ${SEEDS:-0 1 2}; do
  timeout "${SEED_S:-140}" python3 bench/darts_nb201.py --device cuda --variants "$VARIANT" --seeds "$seed" \
      --table "$TABLE" --work "$WORK" --json "$OUT/darts_nb201_seed$seed.json" \
      "search.epochs=${EPOCHS:-8}" "$@" > "$OUT/seed$seed.log" 2>&1
  echo "=== seed $seed (exit $?)"; tail -n 4 "$OUT/seed$seed.log"
  cat "$WORK/cuda/$VARIANT/seed$seed.log" >> "$OUT/seed$seed.log" 2>/dev/null  # the search's own log
  for also in ${ALSO:-}; do
    timeout "${ALSO_S:-60}" python3 bench/darts_nb201.py --device cuda --variants "$also" --seeds "$seed" \
        --table "$TABLE" --work "$WORK" --supernets-from "$VARIANT" --json "$OUT/darts_nb201_${also}_seed$seed.json" \
        "search.epochs=${EPOCHS:-8}" "$@" > "$OUT/${also}_seed$seed.log" 2>&1
    echo "=== $also seed $seed (exit $?)"; tail -n 3 "$OUT/${also}_seed$seed.log"
  done
done
ls -la "$OUT"
