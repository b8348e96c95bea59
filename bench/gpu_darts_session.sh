#!/usr/bin/env bash
# The prepared GPU session for DARTS on NAS-Bench-201 (bench/darts_nb201.py --device cuda): the benchmark's full
# supernet (16 channels, 5 cells per stage) on the 45,000 training images of the JPEG CIFAR-10, the shipped default
# variant, seeds 0-2 **at the same time** on the one GPU (one process each: at batch 64 this supernet is bound by the
# host launching its ~2,000 small kernels per step, so three processes on 16 cores keep the GPU busier than one;
# each seed's search minutes are therefore its share of a shared GPU, an upper bound on its time alone).
# Each seed's supernet trains at most MAX_S seconds (search.max_seconds, default 300: training stops at the first
# epoch's end where one more epoch would pass it, and the cell is derived from there; the report says so), for at
# most EPOCHS epochs (default 6: the schedules span them); every seed's process is killed SEED_S seconds (default
# 450) after the first seed started, so the command stays under about 8 minutes (the device tool's limit is 10).
# Results (JSON, logs) go to $OUT: machine.txt and per seed darts_nb201_seedN.json and seedN.log (7 files; the tool
# returns at most 8). Exit status: 1 if a seed failed.
#
# Prepare on the dev machine, once per checkout (the GPU machine has no network, lacks hydra-core/omegaconf/antlr4/
# lark, and does not see ../shared):
#   bash bench/gpu_darts_session.sh prepare      # gpu_cifar10_session.sh's wheels and data, and the NB201 table
# then run with the device tool: command `bash bench/gpu_darts_session.sh`, carry [".gpu"], timeout_s 560.
# Dry run on a CPU (every step of the script, the full-size supernet, a few images, one epoch):
#   OUT=/tmp/gpu_darts_dry SEEDS="0 1" EPOCHS=2 MAX_S=1 bash bench/gpu_darts_session.sh search.device=cpu \
#       dataset.max_per_class=60 dataset.val_size=100
# Arguments after the script name are overrides for every run (they come after the cuda setting's, so they win).
# ALSO="pt_naswot_tuned ..." re-derives each seed's trained supernet with those variants too (--supernets-from:
# derivation only, ALSO_S seconds each, default 60), after all seeds; their files go into one also.tgz.
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
START=$(date +%s)
run_seed() {   # one seed's search, derivation and table lookup; its own log and the search's log in $OUT/seedN.log
  local seed=$1; shift
  local left=$(( ${SEED_S:-450} - ($(date +%s) - START) ))   # one deadline for all seeds
  [ "$left" -gt 0 ] || left=1                                 # (timeout 0 would mean no limit)
  timeout "$left" python3 bench/darts_nb201.py --device cuda --variants "$VARIANT" --seeds "$seed" \
      --table "$TABLE" --work "$WORK/s$seed" --json "$OUT/darts_nb201_seed$seed.json" \
      "search.epochs=${EPOCHS:-6}" "search.max_seconds=${MAX_S:-300}" "$@" > "$OUT/seed$seed.log" 2>&1
  local status=$?
  cat "$WORK/s$seed/cuda/$VARIANT/seed$seed.log" >> "$OUT/seed$seed.log" 2>/dev/null  # the search's own log
  echo "=== seed $seed (exit $status)"
  { [ "$status" = 0 ] && ! grep -q "failed (exit" "$OUT/seed$seed.log"; } || touch "$WORK/failed"
  grep -m1 -e " -> " -e "failed (exit" "$OUT/seed$seed.log" || tail -n 4 "$OUT/seed$seed.log"
}
SEED_LIST=${SEEDS:-0 1 2}
first=${SEED_LIST%% *}
# the first seed decodes the data set into the cache (AUTOML_CODEGEN_CACHE); the others start once it is there
mkdir -p "$WORK"
run_seed "$first" "$@" &
first_pid=$!
for _ in $(seq 120); do
  grep -q "estimated training memory" "$OUT/seed$first.log" "$WORK/s$first"/cuda/*/seed*.log 2>/dev/null && break
  kill -0 "$first_pid" 2>/dev/null || break   # it ended (failed early): start the others now
  sleep 1
done
for seed in $SEED_LIST; do
  [ "$seed" = "$first" ] || run_seed "$seed" "$@" &
done
wait
for also in ${ALSO:-}; do
  mkdir -p "$WORK/also"
  for seed in $SEED_LIST; do
    timeout "${ALSO_S:-60}" python3 bench/darts_nb201.py --device cuda --variants "$also" --seeds "$seed" \
        --table "$TABLE" --work "$WORK/s$seed" --supernets-from "$VARIANT" \
        --json "$WORK/also/darts_nb201_${also}_seed$seed.json" "search.epochs=${EPOCHS:-6}" \
        "search.max_seconds=${MAX_S:-300}" "$@" > "$WORK/also/${also}_seed$seed.log" 2>&1
    echo "=== $also seed $seed (exit $?)"; tail -n 3 "$WORK/also/${also}_seed$seed.log"
  done
done
[ -n "${ALSO:-}" ] && tar czf "$OUT/also.tgz" -C "$WORK" also
ls -la "$OUT"
[ ! -e "$WORK/failed" ]
