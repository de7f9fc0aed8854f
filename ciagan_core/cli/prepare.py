"""``ciagan prepare FACES -o OUT``: a compact training set, aligned the pipeline's way."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ciagan_core.detection.base import PRECISIONS
from ciagan_core.landmarks import LANDMARKERS


def register(sub: argparse._SubParsersAction) -> None:
    from ciagan_core.training.prepare import SPLITS, PrepareSettings

    p = sub.add_parser(
        "prepare",
        help="labelled face photos -> training crops and landmarks (for ciagan train)",
    )
    p.add_argument(
        "faces",
        type=Path,
        metavar="FACES",
        help="a CSV (file, celeba_identity, optional box columns) or one folder per identity",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="new folder to create")
    p.add_argument(
        "--split",
        choices=SPLITS,
        default=PrepareSettings.split,
        help="holdout (default): the identities of `ciagan eval --split holdout` are marked "
        "eval and not trained on; none: train on every identity",
    )
    p.add_argument("--detector-precision", choices=PRECISIONS, default="int8")
    p.add_argument("--landmarks", choices=LANDMARKERS, default="dlib")
    p.add_argument("--landmark-weights", type=Path, default=None)
    p.add_argument("--jpeg-quality", type=int, default=PrepareSettings.jpeg_quality)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ciagan_core.detection import DetectorSettings, create_detector
    from ciagan_core.errors import ConfigError
    from ciagan_core.evaluation import load_labelled_faces
    from ciagan_core.landmarks import create_landmarker
    from ciagan_core.training.prepare import PrepareSettings, prepare_faces

    if not 50 <= args.jpeg_quality <= 100:
        raise ConfigError("--jpeg-quality must be in 50..100")
    faces = load_labelled_faces(args.faces)
    detector = create_detector("centerface", DetectorSettings(precision=args.detector_precision))
    landmarker = create_landmarker(
        args.landmarks, str(args.landmark_weights) if args.landmark_weights else None, "cpu"
    )
    settings = PrepareSettings(split=args.split, jpeg_quality=args.jpeg_quality)
    with tqdm(total=len(faces), unit="photo", disable=args.no_progress or None) as bar:
        summary = prepare_faces(faces, args.output, detector, landmarker, settings, bar.update)
    print(
        f"{summary['crops']} crops of {summary['identities']['train']} training and "
        f"{summary['identities']['eval']} held-out identities; {summary['rejected']} photos "
        f"rejected (listed in {args.output / 'rejected.csv'})",
        file=sys.stdout,
    )
    return 0
