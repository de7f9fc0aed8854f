#!/usr/bin/env python3
"""int8 against fp32 CenterFace: the same faces found, and how much faster.

Run from the project root: ``python benchmarks/bench_detector.py``. On every photo of
``../shared/data/celeba_faces`` (or ``--images N`` of them, evenly spread) both precisions detect;
a labelled face counts as found when a box overlaps its HOG box with IoU >= 0.3 (3 labels that
are not faces are left out, as in the tests). Small faces: CelebA faces scaled to 10-32 px,
pasted 12 to a 640x480 frame on a real background. Speed: medians of detection alone on the
pipeline benchmark's frames, both precisions in the same run. Writes
``benchmarks/results/detector_cpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import SHARED, celeba_rows, face_patch, make_frame

from ciagan_core.detection import DetectorSettings, create_detector
from ciagan_core.faces import box_iou

PRECISIONS = ("fp32", "int8")
NOT_FACES = {"124193.jpg", "117899.jpg", "071467.jpg"}  # tests/conftest.py MISLABELLED
SMALL_SIDES = (10, 12, 14, 16, 20, 24, 32)


def best_iou(boxes, truth: np.ndarray) -> float:
    if not boxes:
        return 0.0
    return float(box_iou(truth, np.stack([b.as_array() for b in boxes])).max())


def labelled_faces(detectors, rows) -> dict:
    found = {p: np.zeros(len(rows), bool) for p in detectors}
    for i, row in enumerate(rows):
        image = cv2.imread(str(SHARED / "data" / "celeba_faces" / "images" / row["file"]))
        truth = np.array([float(row[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1")])
        for precision, detector in detectors.items():
            found[precision][i] = best_iou(detector.detect(image), truth) >= 0.3
    return {
        "faces": len(rows),
        "recall": {p: round(float(f.mean()), 5) for p, f in found.items()},
        "int8_lost": int((found["fp32"] & ~found["int8"]).sum()),
        "int8_gained": int((found["int8"] & ~found["fp32"]).sum()),
    }


def small_faces(detectors, rows, frames_per_side: int = 5) -> dict:
    import skimage.data

    background = cv2.resize(cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR), (640, 480))
    rng = np.random.default_rng(7)
    rates = {p: {} for p in detectors}
    for side in SMALL_SIDES:
        hits = dict.fromkeys(detectors, 0)
        total = 0
        for _ in range(frames_per_side):
            frame, truths = background.copy(), []
            for j in range(12):
                # The patch is 1.8x the face box, so the face is ``side`` pixels wide.
                row = rows[int(rng.integers(len(rows)))]
                patch = cv2.resize(
                    face_patch(SHARED, row), (int(side * 1.8),) * 2, interpolation=cv2.INTER_AREA
                )
                x, y = 30 + (j % 4) * 150, 30 + (j // 4) * 150
                frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
                c = side * 0.9
                truths.append(np.array([x + c - side / 2, y + c - side / 2, x + c + side / 2,
                                        y + c + side / 2]))  # fmt: skip
            total += len(truths)
            for precision, detector in detectors.items():
                boxes = detector.detect(frame)
                hits[precision] += sum(best_iou(boxes, t) >= 0.3 for t in truths)
        for precision in detectors:
            rates[precision][side] = round(hits[precision] / total, 3)
    return {"faces_per_side": 12 * frames_per_side, "detected": rates}


def speed(detectors, repeats: int) -> list[dict]:
    rows = []
    for size in ((640, 480), (1280, 720)):
        frame = make_frame(size, 5, seed=5)
        ms = {}
        for precision, detector in detectors.items():
            detector.detect(frame)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                detector.detect(frame)
                times.append((time.perf_counter() - start) * 1e3)
            ms[precision] = round(statistics.median(times), 2)
        rows.append({"size": f"{size[0]}x{size[1]}", "ms": ms, "speedup": ms["fp32"] / ms["int8"]})
    return rows


def to_markdown(result: dict) -> str:
    m, lab, small = result["machine"], result["labelled"], result["small"]
    lines = [
        "# int8 vs fp32 CenterFace (CPU)",
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, onnxruntime {m['onnxruntime']}.",
        "",
        f"Labelled faces of shared/data/celeba_faces: {lab['faces']}. Recall fp32 "
        f"{lab['recall']['fp32']:.5f}, int8 {lab['recall']['int8']:.5f}; faces int8 lost: "
        f"{lab['int8_lost']}, gained: {lab['int8_gained']}.",
        "",
        f"Small faces ({small['faces_per_side']} per size, 640x480 frames), share detected:",
        "",
        "| face px | " + " | ".join(str(s) for s in SMALL_SIDES) + " |",
        "|---" * (len(SMALL_SIDES) + 1) + "|",
    ]
    for precision in PRECISIONS:
        rates = small["detected"][precision]
        lines.append(
            f"| {precision} | " + " | ".join(f"{rates[s]:.2f}" for s in SMALL_SIDES) + " |"
        )
    lines += [
        "",
        "Detection alone, median ms (5 faces):",
        "",
        "| frame | fp32 | int8 | speed-up |",
        "|---|---|---|---|",
    ]
    for row in result["speed"]:
        lines.append(
            f"| {row['size']} | {row['ms']['fp32']:.1f} | {row['ms']['int8']:.1f} | "
            f"{row['speedup']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=0, help="photos to use (0: all)")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "detector_cpu.json",
    )
    args = parser.parse_args()
    import onnxruntime

    detectors = {
        p: create_detector("centerface", DetectorSettings(precision=p)) for p in PRECISIONS
    }
    assert {p: d.precision for p, d in detectors.items()} == {p: p for p in PRECISIONS}
    rows = [r for r in celeba_rows(SHARED) if r["file"] not in NOT_FACES]
    if args.images:
        rows = rows[:: max(1, len(rows) // args.images)][: args.images]
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": __import__("os").cpu_count(),
            "onnxruntime": onnxruntime.__version__,
        },
        "speed": speed(detectors, args.repeats),
        "labelled": labelled_faces(detectors, rows),
        "small": small_faces(detectors, rows),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    markdown = to_markdown(result)
    args.output.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"wrote {args.output} and {args.output.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
