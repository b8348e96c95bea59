#!/usr/bin/env bash
# The prepared GPU run for issue 15 (one call of the device tool, about 9 minutes of its 10): on one H200,
#   1. the search: +experiment=cifar10_airbench (the airbench space on the JPEG CIFAR-10, every candidate trained
#      with airbench94's recipe, scored on the 5,000-image validation split; objectives accuracy and train_time_s),
#      starting from airbench94 itself (search.include_default=true: NSGA-II mutates it from the first generation,
#      where a network that beats it is likeliest; INCLUDE_DEFAULT=false searches from random draws only),
#      in rounds for SEARCH_S seconds (default 240), then best/ trained once more and tested;
#   2. the space's default (airbench94's layout) with the same final budget, for comparison;
#   3. the anchors and the networks found, 5 runs each (seeds 0-4) with the same trainer, data (all 50,000 training
#      images) and timer, in rounds of one run each (a drifting GPU moves them all alike): airbench94, airbench95,
#      up to 3 front members picked against the anchors' first runs' times; then airbench96 (about 21 s a run)
#      while time allows (TIME_S, default 500 s; the whole under TOTAL_S, default 530 s, leaving the set-up and the
#      copies below inside the tool's 600 s).
# Everything goes through bench/cifar10_search.py; its results.json is written after every step, so a run cut short
# still returns what it measured.
#
# Prepare on the dev machine, once per checkout (the GPU machine has no network, lacks hydra-core/omegaconf/antlr4/
# lark, and does not see ../shared):
#   bash bench/gpu_cifar10_session.sh prepare      # wheels into .gpu/wheels, the data archive into .gpu/ (ignored)
# then run with the device tool: command `bash bench/gpu_cifar10_session.sh`, carry [".gpu"], timeout_s 600.
# Dry run of the whole script on a CPU (tiny data, one step per training; checks that every step runs):
#   OUT=/tmp/gpu_dry bash bench/gpu_cifar10_session.sh --device cpu --tiny --search-seconds 30 --runs 2
# Arguments after the script name go to bench/cifar10_search.py (they win over the defaults below).
set -u
if [ "${1:-}" = prepare ]; then
    set -e
    mkdir -p .gpu/wheels
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
    cp -u ../shared/data/cifar10-jpeg.tar.xz .gpu/
    # the versions this checkout's environment runs; all four are pure Python (`pip wheel`: antlr4 4.9.3 is
    # published as source only, so it is built into a py3-none-any wheel here)
    pins=$(python3 -c "from importlib.metadata import version as v
print(' '.join(f'{n}=={v(n)}' for n in ('hydra-core', 'omegaconf', 'antlr4-python3-runtime', 'lark')))")
    python3 -m pip wheel -q --no-deps -w .gpu/wheels $pins
    ls -la .gpu .gpu/wheels
    exit 0
fi
FINAL=${OUT:-build/gpu_cifar10}; mkdir -p "$FINAL"
WORK=/tmp/cifar10_search; rm -rf "$WORK"; mkdir -p "$WORK"
source bench/gpu_env.sh "$FINAL"   # wheels, data, machine.txt
timeout "${TOTAL_S:-530}" python3 bench/cifar10_search.py --work "$WORK" --seeds 0 --search-seconds "${SEARCH_S:-240}" \
    --round 8 --runs "${RUNS:-5}" --anchors airbench94,airbench95,airbench96 --confirm 3 --time-limit "${TIME_S:-500}" \
    "search.include_default=${INCLUDE_DEFAULT:-true}" "$@" 2>&1 | tee "$FINAL/cifar10_search.log"
echo "exit status: ${PIPESTATUS[0]}" | tee -a "$FINAL/cifar10_search.log"
cp "$WORK/results.json" "$FINAL/" 2>/dev/null
# the run directory (history, front, report, plots, best/ with model.py and weights) and the logs, in one file
tar czf "$FINAL/search_run.tgz" -C "$WORK" --exclude='*.pt' . 2>/dev/null
tar czf "$FINAL/best_weights.tgz" -C "$WORK" seed0/best/weights.pt seed0/default/weights.pt 2>/dev/null
ls -la "$FINAL"
