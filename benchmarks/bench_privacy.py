#!/usr/bin/env python3
"""What each method leaves identifiable: the README's privacy table, in one command.

Run from the project root: ``python benchmarks/bench_privacy.py [--model M.safetensors]``. It runs
``ciagan eval``'s protocol (REFERENCE §8) on the *held-out* identities of
``../shared/data/celeba_faces`` (the fixed identity split of ``ciagan eval --split``; the default
strengths were tuned on the other half only):

1. every method at the paper's and at this project's strengths, on the photos as they are, with
   FID;
2. the default methods at face widths from 24 px to a face filling a 640 px frame.

Writes ``benchmarks/results/privacy_cpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from ciagan_core.evaluation import (  # noqa: E402
    EvalSettings,
    MethodVariant,
    evaluate,
    load_labelled_faces,
    split_identities,
)
from ciagan_core.evaluation.dataset import sample_faces  # noqa: E402
from ciagan_core.evaluation.protocol import render_markdown  # noqa: E402
from ciagan_core.pipeline import AnonymizerConfig  # noqa: E402

METHODS = (
    "none",
    "blur",
    "blur:kernel=9",
    "blur:kernel=17",
    "pixelate",
    "pixelate:cells=16",
    "solid",
)
SIZE_METHODS = ("none", "blur", "pixelate")
SIZES = (24, 48, 400)


def run(faces, probes, methods, base, settings) -> dict:
    bar = None

    def on_stage(name: str, total: int) -> None:
        nonlocal bar
        if bar is not None:
            bar.close()
        bar = tqdm(total=total, desc=name, unit="face")

    report = evaluate(
        faces,
        probes,
        [MethodVariant.parse(m) for m in methods],
        base,
        settings,
        lambda n: bar.update(n),
        on_stage,
    )
    bar.close()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=60)
    parser.add_argument("--photos-per-identity", type=int, default=10)
    parser.add_argument("--probes-per-identity", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, help="also measure ciagan with this model file")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    faces = split_identities(
        load_labelled_faces(SHARED / "data" / "celeba_faces" / "faces.csv"), "holdout"
    )
    chosen, probes = sample_faces(
        faces, args.identities, args.photos_per_identity, args.probes_per_identity, args.seed
    )
    base = AnonymizerConfig(model=str(args.model) if args.model else None)
    methods = METHODS + (("ciagan",) if args.model else ())
    start = time.perf_counter()
    native = run(chosen, probes, methods, base, EvalSettings(fid=True))
    sizes = run(chosen, probes, SIZE_METHODS, base, EvalSettings(face_sizes=SIZES, fid=False))
    result = {
        "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}",
        "split": "holdout",
        "seed": args.seed,
        "defaults": {
            "method": base.method,
            "blur_kernel": base.methods.blur_kernel,
            "pixelate_cells": base.methods.pixelate_cells,
            "region": base.region,
        },
        "native": native,
        "face_sizes": sizes,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "privacy_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    text = [
        "# Privacy: what each method leaves identifiable (CPU)",
        "",
        "`python benchmarks/bench_privacy.py`: `ciagan eval`'s protocol on held-out identities "
        f"of shared/data/celeba_faces (seed {args.seed}). Defaults: {result['defaults']}.",
        "",
        "## Every method, photos as they are",
        "",
        render_markdown(native),
        "## The defaults at every face size",
        "",
        "Photos rescaled so the face box is 24 px, 48 px, or 400 px wide (cropped to a 640 px "
        "frame: a face filling the frame).",
        "",
        render_markdown(sizes),
        "A face counted as missed by the pipeline may be a labelled box that is not a face "
        "(tests/conftest.py lists the known ones, such as 071467.jpg).",
        "",
    ]
    (args.out / "privacy_cpu.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
