#!/usr/bin/env python3
"""Pipeline benchmark for a GPU machine: 1280x720 frames with 1 and 10 faces, per-stage ms and
frames/s for the default blur and for ciagan (generator on the GPU), against deface on the
same frames in the same run.

    python benchmarks/bench_pipeline_gpu.py --faces-from PREPARED --model M.safetensors \\
        [--device cuda] [--precision fp16]

Made for machines without ``../shared`` or dlib (the GPU machine): faces come from the crops
of a prepared set (``ciagan prepare``) pasted on a public-domain background, and landmarks from
the face mesh. Writes ``pipeline_<device>.{json,md}`` under ``$OUT`` when set, else
``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import deface_runner, median_ms, stage_medians

from ciagan_core.pipeline import Anonymizer, AnonymizerConfig

SIZE = (1280, 720)
FACE_COUNTS = (1, 10)


def crop_frame(prepared: Path, faces: int, seed: int) -> np.ndarray:
    """A 1280x720 frame with ``faces`` prepared crops (5 per row) on the coffee photo."""
    import skimage.data

    crops = sorted((prepared / "crops").rglob("*.jpg"))
    rng = np.random.default_rng(seed)
    width, height = SIZE
    frame = cv2.resize(cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR), SIZE)
    cols = min(faces, 5)
    rows = int(np.ceil(faces / cols))
    cell_w, cell_h = width // cols, height // rows
    scale = min(cell_w / 178, cell_h / 218) * 0.85
    w, h = int(178 * scale), int(218 * scale)
    for i, idx in enumerate(rng.choice(len(crops), faces, replace=False)):
        crop = cv2.resize(cv2.imread(str(crops[idx])), (w, h), interpolation=cv2.INTER_AREA)
        x = (i % cols) * cell_w + (cell_w - w) // 2
        y = (i // cols) * cell_h + (cell_h - h) // 2
        frame[y : y + h, x : x + w] = crop
    return frame


def _without_video_io() -> None:
    """deface imports imageio's ffmpeg plugin, which needs imageio-ffmpeg (30 MB, not on the GPU
    machine) only for video files; the frame function timed here never touches it."""
    import importlib.util
    import types

    if importlib.util.find_spec("imageio_ffmpeg") is None:
        sys.modules["imageio_ffmpeg"] = types.ModuleType("imageio_ffmpeg")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces-from", type=Path, required=True, help="a prepared set")
    parser.add_argument("--model", type=Path, required=True, help="generator model file")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--engine", default="torch")
    parser.add_argument("--landmarks", default="mesh")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    import onnxruntime
    import torch

    blur = Anonymizer(AnonymizerConfig(method="blur"))
    ciagan = Anonymizer(
        AnonymizerConfig(
            method="ciagan",
            model=str(args.model),
            engine=args.engine,
            device=args.device,
            precision=args.precision,
            landmarks=args.landmarks,
            max_batch=16,
        ),
        detector=blur.detector,
    )
    methods = {"blur": blur, f"ciagan ({args.engine} {args.precision})": ciagan}
    _without_video_io()
    _, deface_run = deface_runner()
    rows = []
    for faces in FACE_COUNTS:
        frame = crop_frame(args.faces_from, faces, seed=faces)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        deface_ms = median_ms(lambda rgb=rgb: deface_run(rgb), args.repeats)
        for name, anonymizer in methods.items():
            found = anonymizer.process(frame)
            generated = sum(f.method == "ciagan" for f in found.faces)
            stages = stage_medians(anonymizer, frame, args.repeats)
            total = median_ms(lambda a=anonymizer, f=frame: a.process(f), args.repeats)
            rows.append(
                {
                    "faces": faces,
                    "found": len(found.faces),
                    "generated": generated,
                    "method": name,
                    "stages_ms": stages,
                    "frame_ms": round(total, 2),
                    "fps": round(1e3 / total, 2),
                    "deface_fps": round(1e3 / deface_ms, 2),
                    "fps_vs_deface": round(deface_ms / total, 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "gpu": gpu,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "mesh_providers": getattr(ciagan.landmarker, "session", None)
            and ciagan.landmarker.session.get_providers(),
        },
        "frame": f"{SIZE[0]}x{SIZE[1]}",
        "repeats": args.repeats,
        "rows": rows,
    }
    out_dir = Path(os.environ.get("OUT") or Path(__file__).resolve().parent / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"pipeline_{args.device.split(':')[0]}"
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Pipeline benchmark ({args.device}, {gpu})",
        "",
        f"{result['machine']['cpu_count']} CPUs, torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}; {result['frame']} frames of prepared crops; landmarks: "
        f"{args.landmarks}; medians of {args.repeats} runs; deface on the same frames.",
        "",
        "| faces | method | frames/s | x deface | detect | landmarks | align | generate | blend |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["stages_ms"]
        lines.append(
            f"| {r['faces']} | {r['method']} | {r['fps']:.1f} | {r['fps_vs_deface']:.2f} | "
            f"{s['detect']:.1f} | {s['landmarks']:.1f} | {s['align']:.1f} | "
            f"{s['generate']:.1f} | {s['blend']:.1f} |"
        )
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
