#!/usr/bin/env python3
"""Landmark benchmark: ms per face for dlib and the face mesh at 1, 10 and 32 faces per call.

Run from the project root: ``python benchmarks/bench_landmarks.py [--device cuda]``. Faces are
real shared faces (160 px) in a grid frame; CenterFace finds the boxes once, then each
landmarker gets every box of the frame in one call. Medians of repeated runs; dlib is timed in
the same run as the reference (machines are shared). Writes
``benchmarks/results/landmarks_<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import median_ms
from frames import SHARED, celeba_rows, face_patch

from ciagan_core.detection import create_detector
from ciagan_core.landmarks import create_landmarker
from ciagan_core.landmarks.mesh import MeshLandmarker

COUNTS = (1, 10, 32)
SIDE = 160
COLUMNS = 8


def grid_frame(count: int) -> np.ndarray:
    rows = celeba_rows(SHARED)
    picks = np.random.default_rng(count).choice(len(rows), count, replace=False)
    lines = int(np.ceil(count / COLUMNS))
    frame = np.full((lines * SIDE, min(count, COLUMNS) * SIDE, 3), 127, np.uint8)
    for i, idx in enumerate(picks):
        y, x = (i // COLUMNS) * SIDE, (i % COLUMNS) * SIDE
        frame[y : y + SIDE, x : x + SIDE] = cv2.resize(face_patch(SHARED, rows[idx]), (SIDE, SIDE))
    return frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    import onnxruntime

    detector = create_detector("centerface")
    landmarkers = {
        "dlib": create_landmarker("dlib"),
        "mesh": MeshLandmarker(device=args.device),
        "mesh one pass": MeshLandmarker(device=args.device, refine=False),
    }
    rows = []
    for count in COUNTS:
        frame = grid_frame(count)
        boxes = detector.detect(frame)
        row = {"faces": count, "found": len(boxes), "ms_per_face": {}}
        for name, landmarker in landmarkers.items():
            ms = median_ms(
                lambda lm=landmarker, f=frame, b=boxes: lm.landmarks(f, b), args.repeats
            )
            row["ms_per_face"][name] = round(ms / max(len(boxes), 1), 3)
        row["mesh_vs_dlib"] = round(row["ms_per_face"]["mesh"] / row["ms_per_face"]["dlib"], 2)
        rows.append(row)
        print(f"{count:3} faces ({len(boxes)} found): {row['ms_per_face']} ms/face", flush=True)
    providers = landmarkers["mesh"].session.get_providers()
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": __import__("os").cpu_count(),
            "onnxruntime": onnxruntime.__version__,
            "providers": providers,
        },
        "device": args.device,
        "repeats": args.repeats,
        "face_px": SIDE,
        "rows": rows,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"landmarks_{args.device.split(':')[0]}"
    (args.output_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Landmark benchmark ({args.device})",
        "",
        f"Machine: {result['machine']['platform']}, {result['machine']['cpu_count']} CPUs, "
        f"onnxruntime {onnxruntime.__version__} ({providers[0]}). Medians of {args.repeats} "
        f"runs; {SIDE} px shared faces in one frame, all boxes in one call. dlib runs on the "
        "CPU, one face at a time, in the same run.",
        "",
        "| faces per call | dlib ms/face | mesh ms/face | mesh one pass ms/face | mesh / dlib |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ms = r["ms_per_face"]
        lines.append(
            f"| {r['faces']} | {ms['dlib']:.2f} | {ms['mesh']:.2f} | {ms['mesh one pass']:.2f} "
            f"| {r['mesh_vs_dlib']:.2f} |"
        )
    lines += [
        "",
        "`mesh` is the shipped setting (a second, refining pass on the crop its first pass "
        "found); `mesh one pass` skips it. Accuracy: `ciagan_core/landmarks/face_mesh/"
        "mesh68_map.json` (from `scripts/fit_mesh68.py`).",
        "",
    ]
    (args.output_dir / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
