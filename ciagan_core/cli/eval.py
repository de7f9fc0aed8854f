"""``ciagan eval FACES``: how identifiable anonymized faces still are, per method."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ciagan_core.atomic_write import write_bytes_atomic
from ciagan_core.cli.anonymize import make_output_folder
from ciagan_core.cli.pipeline_args import add_pipeline_arguments, pipeline_config
from ciagan_core.detection import check_detector_settings
from ciagan_core.errors import ConfigError
from ciagan_core.evaluation import EvalSettings, MethodVariant, load_labelled_faces
from ciagan_core.evaluation.dataset import SPLITS, sample_faces, split_identities
from ciagan_core.evaluation.protocol import parse_face_size, render_markdown
from ciagan_core.model_file import check_output_apart

DEFAULT_METHODS = ("none", "blur", "pixelate")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="privacy and quality report: identification, detection, missed faces, FID",
        description="Anonymize labelled face photos with each method and measure how often "
        "dlib's face recognizer still names the person (identification rate), how often face "
        "detectors still find a face, which faces the pipeline missed, and FID.",
    )
    p.add_argument(
        "faces",
        type=Path,
        metavar="FACES",
        help="a CSV (file, celeba_identity, optional box_x0..box_y1) or a folder with one "
        "subfolder of photos per identity",
    )
    p.add_argument(
        "--method",
        action="append",
        dest="methods",
        metavar="SPEC",
        help="a method to measure, repeatable: none (untouched), deface (the reference: "
        "deface's defaults), blur, pixelate, solid, ciagan (needs --model), with options as "
        "in 'blur:kernel=17', 'pixelate:cells=16,region=mask' "
        f"(default: {', '.join(DEFAULT_METHODS)})",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="report folder: eval.json and eval.md are written there when the run completes",
    )
    p.add_argument(
        "--face-sizes",
        default="native",
        help="face widths to rescale the photos to, e.g. 'native,24,48,96,600' (default: native)",
    )
    p.add_argument(
        "--frame-side",
        type=int,
        default=EvalSettings.max_frame_side,
        help="rescaled photos are cropped around the face to at most this side "
        f"(default: {EvalSettings.max_frame_side}; a 400 px face then fills the frame)",
    )
    p.add_argument("--split", choices=SPLITS, default="all", help="identity half to use")
    p.add_argument("--identities", type=int, default=0, help="at most this many (0: all)")
    p.add_argument(
        "--photos-per-identity", type=int, default=0, help="gallery photos per identity (0: all)"
    )
    p.add_argument(
        "--probes-per-identity",
        type=int,
        default=0,
        help="anonymized photos per identity (0: every gallery photo)",
    )
    p.add_argument("--no-fid", action="store_true", help="skip FID (the slowest measure)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_pipeline_arguments(p, method=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ciagan_core.evaluation import evaluate

    variants = [MethodVariant.parse(spec) for spec in args.methods or DEFAULT_METHODS]
    if len({v.label for v in variants}) != len(variants):
        raise ConfigError("a method is listed twice (with the same settings)")
    sizes = tuple(dict.fromkeys(parse_face_size(s.strip()) for s in args.face_sizes.split(",")))
    for name in ("identities", "photos_per_identity", "probes_per_identity"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
    faces = split_identities(load_labelled_faces(args.faces), args.split)
    chosen, probes = sample_faces(
        faces, args.identities, args.photos_per_identity, args.probes_per_identity, args.seed
    )
    if args.output.exists() and not args.output.is_dir():
        raise ConfigError(f"{args.output}: exists and is not a folder")
    for name in ("eval.json", "eval.md"):  # the labelled faces are never overwritten
        check_output_apart(args.output / name, args.faces)
    base = pipeline_config(args)
    if args.frame_side < 64:
        raise ConfigError(f"--frame-side must be at least 64, got {args.frame_side}")
    check_detector_settings(base.detector, base.detector_settings)  # nothing written if bad
    make_output_folder(args.output)  # before the work, not after it
    settings = EvalSettings(
        face_sizes=sizes, max_frame_side=args.frame_side, fid=not args.no_fid, device=args.device
    )
    bar = None

    def on_stage(name: str, total: int) -> None:
        nonlocal bar
        if bar is not None:
            bar.close()
        bar = tqdm(total=total, desc=name, unit="face", disable=args.no_progress or None)

    try:
        report = evaluate(
            chosen, probes, variants, base, settings, lambda n: bar.update(n), on_stage
        )
    finally:
        if bar is not None:
            bar.close()
    report.update(
        source=str(args.faces),
        split=args.split,
        seed=args.seed,
        methods=[v.spec for v in variants],
    )
    table = render_markdown(report)
    # Written only now, when every method has run: never a partial report that looks complete.
    write_bytes_atomic(args.output / "eval.json", (json.dumps(report, indent=2) + "\n").encode())
    write_bytes_atomic(args.output / "eval.md", table.encode())
    sys.stdout.write(table)
    print(f"report: {args.output / 'eval.json'}, {args.output / 'eval.md'}")
    return 0
