#!/usr/bin/env python3
"""What each method leaves identifiable: the README's privacy table, in one command.

Run from the project root: ``python benchmarks/bench_privacy.py [--model M.safetensors]``. It runs
``ciagan eval``'s protocol (REFERENCE §8) on the *held-out* identities of
``../shared/data/celeba_faces`` (the fixed identity split of ``ciagan eval --split``; the default
strengths were tuned on the other half only):

1. every method at the paper's and at this project's strengths, on the photos as they are, with
   FID;
2. the default methods at face widths from 24 px to a face filling a 640 px frame.

deface (its command line's defaults) is measured beside them as the reference. Writes
``benchmarks/results/privacy_cpu.{json,md}`` and the privacy/utility plot
``benchmarks/results/privacy_cpu.png`` (``--render-only`` rewrites the table and the plot from
the JSON).
``--methods deface,blur --merge`` measures those methods again and keeps the other rows of the
existing JSON (same sample, same seed: the rows are deterministic).
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
    "deface",
    "blur",
    "blur:kernel=9",
    "blur:kernel=17",
    "pixelate",
    "pixelate:cells=16",
    "solid",
)
SIZE_METHODS = ("none", "deface", "blur", "pixelate")
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
    parser.add_argument("--methods", help="comma-separated subset of the methods to run")
    parser.add_argument(
        "--merge", action="store_true", help="keep the existing JSON's rows of other methods"
    )
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the table and plot from the JSON"
    )
    args = parser.parse_args()
    if args.render_only:
        result = json.loads((args.out / "privacy_cpu.json").read_text())
        write_markdown(result, args.out)
        plot(result, args.out)
        return 0

    faces = split_identities(
        load_labelled_faces(SHARED / "data" / "celeba_faces" / "faces.csv"), "holdout"
    )
    chosen, probes = sample_faces(
        faces, args.identities, args.photos_per_identity, args.probes_per_identity, args.seed
    )
    base = AnonymizerConfig(model=str(args.model) if args.model else None)
    methods = METHODS + (("ciagan",) if args.model else ())
    size_methods = SIZE_METHODS
    if args.methods:
        chosen_methods = args.methods.split(",")
        methods = tuple(m for m in methods if m in chosen_methods)
        size_methods = tuple(m for m in SIZE_METHODS if m in chosen_methods)
    start = time.perf_counter()
    native = run(chosen, probes, methods, base, EvalSettings(fid=True))
    sizes = run(chosen, probes, size_methods, base, EvalSettings(face_sizes=SIZES, fid=False))
    if args.merge:
        old = json.loads((args.out / "privacy_cpu.json").read_text())
        native = merged(old["native"], native, METHODS)
        sizes = merged(old["face_sizes"], sizes, SIZE_METHODS)
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
    if args.merge:
        result["merged"] = f"rows of {', '.join(methods)} measured again, the others kept"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "privacy_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(write_markdown(result, args.out))
    plot(result, args.out)
    return 0


def write_markdown(result: dict, out: Path) -> str:
    """privacy_cpu.md from the result."""
    text = [
        "# Privacy: what each method leaves identifiable (CPU)",
        "",
        "`python benchmarks/bench_privacy.py`: `ciagan eval`'s protocol on held-out identities "
        f"of shared/data/celeba_faces (seed {result['seed']}). Defaults: {result['defaults']}. "
        "`deface` is deface 1.5 at its command line's defaults (the reference).",
        "",
        "![Identification against detection](privacy_cpu.png)",
        "",
        "## Every method, photos as they are",
        "",
        render_markdown(result["native"]),
        "## The defaults at every face size",
        "",
        "Photos rescaled so the face box is 24 px, 48 px, or 400 px wide (cropped to a 640 px "
        "frame: a face filling the frame).",
        "",
        render_markdown(result["face_sizes"]),
        "A face counted as missed by the pipeline may be a labelled box that is not a face "
        "(tests/conftest.py lists the known ones, such as 071467.jpg).",
        "",
    ]
    (out / "privacy_cpu.md").write_text("\n".join(text))
    return "\n".join(text)


def merged(old: dict, new: dict, order: tuple[str, ...]) -> dict:
    """``old``'s report with ``new``'s rows in place of (or beside) its rows of those methods,
    in the order of ``order``. Both must come from the same sample."""
    for key in ("identities", "probes", "gallery_photos", "chance"):
        if old[key] != new[key]:
            raise SystemExit(f"--merge: the existing JSON has another sample ({key})")
    rows = {(r["method"], r["face_size"]): r for r in old["rows"]}
    rows |= {(r["method"], r["face_size"]): r for r in new["rows"]}

    def rank(key: tuple[str, object]) -> tuple[int, int]:
        spec, size = key
        exact = [i for i, m in enumerate(order) if MethodVariant.parse(m).label == spec]
        base = [i for i, m in enumerate(order) if m == spec.split(":")[0]]
        return (exact or base or [len(order)])[0], -1 if size == "native" else int(size)

    return {**old, "rows": [rows[k] for k in sorted(rows, key=rank)]}


def plot(result: dict, out: Path) -> Path:
    """Identification rate against CenterFace detection rate, one point per method and
    strength (photos as they are), with deface and the untouched photo as references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    native = result["native"]
    fig, ax = plt.subplots(figsize=(7.6, 4.4), dpi=110)
    markers = iter("ovs^<>Ph*Xd")
    for row in native["rows"]:
        name = row["method"]
        x, y = row["detection_rate_centerface"], max(row["identification_rate"], 0.005)
        style = {"s": 60, "edgecolors": "black", "linewidths": 0.5}
        if name == "none":
            label = "untouched photo"
            style |= {"marker": "s", "color": "black"}
        elif name == "deface":
            label = "deface (reference)"
            style |= {"marker": "D", "color": "tab:red"}
        else:
            method, _, options = name.partition(":")
            settings = dict(o.split("=") for o in options.split(",") if "=" in o)
            strength = settings.get("kernel") or settings.get("cells")
            suffix = {"blur": f", kernel {strength}", "pixelate": f", {strength} cells"}
            label = method + suffix.get(method, "")
            defaults = result["defaults"]
            if (method == "blur" and strength == str(defaults["blur_kernel"])) or (
                method == "pixelate" and strength == str(defaults["pixelate_cells"])
            ):
                label += " (default)"
                style["s"] = 110
            color = {"blur": "tab:blue", "pixelate": "tab:green", "solid": "tab:gray"}
            style |= {"marker": next(markers), "color": color.get(method, "tab:purple")}
        ax.scatter([x], [y], label=f"{label}: {row['identification_rate']:.3f}", zorder=3, **style)
    ax.axhline(native["chance"], color="gray", linestyle=":", linewidth=1, label="chance")
    ax.set_yscale("log")
    ax.set_ylim(0.004, 1.5)
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel("still detected as a face (CenterFace)")
    ax.set_ylabel("still identified (dlib 128-d, nearest identity)")
    ax.set_title(
        f"Privacy against utility: {native['probes']} held-out photos, "
        f"{native['identities']} identities",
        fontsize=10,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5), title="identified")
    fig.tight_layout()
    path = out / "privacy_cpu.png"
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
