#!/usr/bin/env python3
"""Pipeline benchmark: per-stage ms and frames/s, against deface on the same frames.

Run from the project root: ``python benchmarks/bench_pipeline.py [--model M.safetensors]``.
Prints a table and writes ``benchmarks/results/pipeline_cpu.json``. Medians of repeated runs;
targets are stated as ratios to deface measured in the same run (the machines are shared).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import SHARED, celeba_rows, make_frame

from ciagan_core.detection import DetectorSettings
from ciagan_core.faces import box_iou
from ciagan_core.pipeline import STAGES, Anonymizer, AnonymizerConfig

SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}
FACE_COUNTS = (1, 5)


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def deface_runner():
    """deface's own path: CenterFace at full resolution, then its default blur (ellipse)."""
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame

    with contextlib.redirect_stdout(io.StringIO()):
        centerface = CenterFace(in_shape=None, backend="onnxrt")

    def detect(rgb):
        return centerface(rgb, threshold=0.2)[0]

    def run(rgb):
        frame = rgb.copy()
        anonymize_frame(
            detect(frame),
            frame,
            mask_scale=1.3,
            replacewith="blur",
            ellipse=True,
            draw_scores=False,
            replaceimg=None,
            mosaicsize=20,
        )
        return frame

    return detect, run


def stage_medians(anonymizer: Anonymizer, frame: np.ndarray, repeats: int) -> dict[str, float]:
    anonymizer.process(frame)
    samples = {s: [] for s in STAGES}
    for _ in range(repeats):
        anonymizer.reset()
        for stage, ms in anonymizer.process(frame).timings.items():
            samples[stage].append(ms)
    return {s: round(statistics.median(v), 3) for s, v in samples.items()}


def recall(detect, rows, shared: Path) -> float:
    hits = 0
    for row in rows:
        image = cv2.imread(str(shared / "data" / "celeba_faces" / "images" / row["file"]))
        boxes = detect(image)
        truth = np.array([float(row[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1")])
        if len(boxes) and box_iou(truth, np.asarray(boxes)[:, :4]).max() >= 0.3:
            hits += 1
    return hits / len(rows)


def to_markdown(result: dict) -> str:
    """The results as the README's table."""
    m = result["machine"]
    lines = [
        "# Pipeline benchmark (CPU)",
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']} "
        f"({m['torch_threads']} threads), onnxruntime {m['onnxruntime']}. Medians of "
        f"{result['repeats']} runs; deface (CenterFace at full resolution + its default blur) "
        "timed on the same frames in the same run.",
        "",
        "| frame | faces | method | frames/s | x deface | detect | landmarks | align | generate "
        "| blend | align+blend per face |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        s = r["stages_ms"]
        lines.append(
            f"| {r['size']} | {r['faces']} | {r['method']} | {r['fps']:.1f} | "
            f"{r['fps_vs_deface']:.2f} | {s['detect']:.1f} | {s['landmarks']:.1f} | "
            f"{s['align']:.1f} | {s['generate']:.1f} | {s['blend']:.1f} | "
            f"{r['align_mask_blend_ms_per_face']:.2f} |"
        )
    rec = result["recall"]
    t = result["targets"]
    lines += [
        "",
        "Stage times are milliseconds per frame. Rows: `blur` is the default configuration (the "
        "detection box grown 1.3x, no landmarks, int8 CenterFace); `blur-mask` blurs the "
        "68-landmark mask instead (dlib landmarks), `blur-mask-mesh` with the face mesh "
        "landmarker; `blur-fp32det` is `blur` with the published fp32 CenterFace; `ciagan` "
        "generates faces (needs `--model`), `ciagan-mesh` with the face mesh landmarker.",
        "",
        f"Detection recall on {rec['images']} shared faces: ours {rec['ours']:.4f} "
        f"({result['detector_precision']}), ours fp32 {rec['ours_fp32']:.4f}, "
        f"deface {rec['deface']:.4f}.",
        f"Align + mask + landmark image + blend at 1280x720: at most "
        f"{t['align_mask_blend_ms_per_face_1280x720_max']:.2f} ms per face "
        f"(budget {t['budget_ms_per_face']:.0f} ms).",
        f"Lowest frames/s ratio to deface (goal {t['goal_fps_vs_deface']:.0f}x): "
        f"blur {t['blur_fps_vs_deface_min']:.2f}x, blur-mask "
        f"{t['blur_mask_fps_vs_deface_min']:.2f}x, blur-fp32det "
        f"{t['blur_fp32det_fps_vs_deface_min']:.2f}x.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="generator model file; without it the ciagan rows are skipped",
    )
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--recall-images", type=int, default=300)
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "pipeline_cpu.json",
    )
    args = parser.parse_args()

    import onnxruntime
    import torch

    # "blur" is the default configuration: the grown box (face, forehead and ears, like deface's
    # region), no landmarks, the int8 detector. The other rows change one thing each.
    blur = Anonymizer(AnonymizerConfig(method="blur"))
    methods = {
        "blur": blur,
        "blur-mask": Anonymizer(
            AnonymizerConfig(method="blur", region="mask"), detector=blur.detector
        ),
        "blur-fp32det": Anonymizer(
            AnonymizerConfig(method="blur", detector_settings=DetectorSettings(precision="fp32"))
        ),
    }
    methods["blur-mask-mesh"] = Anonymizer(
        AnonymizerConfig(method="blur", region="mask", landmarks="mesh"), detector=blur.detector
    )
    fp32_detector = methods["blur-fp32det"].detector
    if args.model:
        methods["ciagan"] = Anonymizer(
            AnonymizerConfig(method="ciagan", model=str(args.model)),
            detector=blur.detector,
            landmarker=methods["blur-mask"].landmarker,
        )
        methods["ciagan-mesh"] = Anonymizer(
            AnonymizerConfig(method="ciagan", model=str(args.model), landmarks="mesh"),
            detector=blur.detector,
            landmarker=methods["blur-mask-mesh"].landmarker,
            engine=methods["ciagan"].engine,
        )
    deface_detect, deface_run = deface_runner()

    rows = []
    for size_name, size in SIZES.items():
        for faces in FACE_COUNTS:
            frame = make_frame(size, faces, seed=faces)
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            deface_ms = median_ms(lambda rgb=rgb: deface_run(rgb), args.repeats)
            for name, anonymizer in methods.items():
                found = len(anonymizer.process(frame).faces)
                stages = stage_medians(anonymizer, frame, args.repeats)
                total = median_ms(lambda a=anonymizer, f=frame: a.process(f), args.repeats)
                per_face = (stages["align"] + stages["blend"]) / max(found, 1)
                rows.append(
                    {
                        "size": size_name,
                        "faces": faces,
                        "found": found,
                        "method": name,
                        "stages_ms": stages,
                        "frame_ms": round(total, 2),
                        "fps": round(1e3 / total, 2),
                        "align_mask_blend_ms_per_face": round(per_face, 3),
                        "deface_frame_ms": round(deface_ms, 2),
                        "deface_fps": round(1e3 / deface_ms, 2),
                        "fps_vs_deface": round(deface_ms / total, 2),
                    }
                )
                print(
                    f"{size_name:9} {faces} faces {name:12} {rows[-1]['fps']:7.1f} frames/s "
                    f"(deface {rows[-1]['deface_fps']:5.1f}, x{rows[-1]['fps_vs_deface']:.2f}) "
                    f"align+blend {per_face:5.2f} ms/face  stages {stages}",
                    flush=True,
                )

    sample = celeba_rows(SHARED)[:: max(1, len(celeba_rows(SHARED)) // args.recall_images)]
    ours = recall(lambda im: [b.as_array() for b in blur.detector.detect(im)], sample, SHARED)
    ours_fp32 = recall(lambda im: [b.as_array() for b in fp32_detector.detect(im)], sample, SHARED)
    theirs = recall(lambda im: deface_detect(cv2.cvtColor(im, cv2.COLOR_BGR2RGB)), sample, SHARED)
    print(
        f"recall on {len(sample)} shared faces: ours {ours:.4f} "
        f"({blur.detector.precision}), ours fp32 {ours_fp32:.4f}, deface {theirs:.4f}"
    )

    hd = [r for r in rows if r["size"] == "1280x720"]
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": __import__("os").cpu_count(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "repeats": args.repeats,
        "rows": rows,
        "detector_precision": blur.detector.precision,
        "recall": {"images": len(sample), "ours": ours, "ours_fp32": ours_fp32, "deface": theirs},
        "targets": {
            "align_mask_blend_ms_per_face_1280x720_max": max(
                r["align_mask_blend_ms_per_face"] for r in hd
            ),
            "budget_ms_per_face": 5.0,
            "blur_fps_vs_deface_min": min(
                r["fps_vs_deface"] for r in rows if r["method"] == "blur"
            ),
            "blur_mask_fps_vs_deface_min": min(
                r["fps_vs_deface"] for r in rows if r["method"] == "blur-mask"
            ),
            "blur_fp32det_fps_vs_deface_min": min(
                r["fps_vs_deface"] for r in rows if r["method"] == "blur-fp32det"
            ),
            "goal_fps_vs_deface": 2.0,
            "recall_not_lower": ours >= theirs,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    markdown = args.output.with_suffix(".md")
    markdown.write_text(to_markdown(result))
    print(json.dumps(result["targets"], indent=2))
    print(f"wrote {args.output} and {markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
