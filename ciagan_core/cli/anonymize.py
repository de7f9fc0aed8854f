"""``ciagan anonymize INPUT... -o OUT``: images, folders and videos, with a JSON summary."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ciagan_core import __version__
from ciagan_core.atomic_write import write_bytes_atomic
from ciagan_core.detection import DETECTORS, DetectorSettings
from ciagan_core.detection.base import PRECISIONS
from ciagan_core.engines import ENGINES
from ciagan_core.errors import CiaganError, ConfigError, InputError
from ciagan_core.identity import POLICIES, IdentityConfig
from ciagan_core.landmarks import LANDMARKERS
from ciagan_core.methods import METHODS, REGIONS, MethodSettings
from ciagan_core.pipeline import STAGES, Anonymizer, AnonymizerConfig, FrameResult

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("anonymize", help="anonymize image files, folders and videos")
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="image or video files, or folders (searched recursively)",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output folder (or output file, for a single input file)",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default="blur",
        help="anonymization method (default: blur; ciagan needs --model)",
    )
    p.add_argument(
        "--region",
        choices=REGIONS,
        default="box",
        help="where blur/pixelate/solid go: the grown detection box (default: face, forehead "
        "and ears; no landmarks) or the landmark mask (jaw to brows); ciagan always uses its mask",
    )
    p.add_argument(
        "--fallback",
        choices=[m for m in METHODS if m != "ciagan"],
        default="pixelate",
        help="method for faces without reliable landmarks",
    )
    p.add_argument("--model", type=Path, help="generator model file (.safetensors)")
    p.add_argument(
        "--identity",
        default="per_track",
        help=f"identity policy ({', '.join(POLICIES)}), 'fixed:ID', 'pool:ID,ID,...' "
        "or a YAML file (default: per_track)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of random identity draws")
    p.add_argument("--detector", choices=sorted(DETECTORS), default="centerface")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="detector score threshold (backend units; default: backend's own)",
    )
    p.add_argument("--min-face", type=float, default=8.0, help="smallest face side in pixels")
    p.add_argument(
        "--detector-precision",
        choices=PRECISIONS,
        default="int8",
        help="centerface: int8 (default; built and cached on first use, same recall, faster on "
        "CPU) or fp32 (the published model)",
    )
    p.add_argument("--landmarks", choices=LANDMARKERS, default="dlib")
    p.add_argument(
        "--landmark-weights",
        type=Path,
        default=None,
        help="local weights for the landmarker (face_alignment: 2DFAN4 file/folder)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="inference engine (default auto: onnxruntime on CPU; on CUDA tensorrt, "
        "else onnxruntime, else torch)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--blur-kernel", type=int, default=17)
    p.add_argument("--pixelate-cells", type=int, default=8)
    p.add_argument(
        "--hold-frames",
        type=int,
        default=5,
        help="video: frames a lost face stays covered (default: 5)",
    )
    p.add_argument("--batch", type=int, default=4, help="video frames per generator call")
    p.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="JSON summary path (default: OUT/summary.json or next to OUT file)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def parse_identity(spec: str, seed: int) -> IdentityConfig:
    """``per_track``, ``random``, ``fixed:ID``, ``pool:ID,ID``, a bare ID, or a YAML path."""
    if spec.endswith((".yaml", ".yml")):
        return IdentityConfig.from_yaml(spec)
    name, _, arg = spec.partition(":")
    try:
        if name.isdigit():
            return IdentityConfig(policy="fixed", identity=int(name), seed=seed)
        if name == "fixed":
            return IdentityConfig(policy="fixed", identity=int(arg), seed=seed)
        if name == "pool":
            return IdentityConfig.from_dict(
                {"policy": "pool", "pool": [int(x) for x in arg.split(",") if x], "seed": seed}
            )
    except ValueError:
        raise ConfigError(f"bad identity {spec!r}: identities are integers") from None
    return IdentityConfig.from_dict({"policy": name, "seed": seed})


@dataclass
class Summary:
    """What ``ciagan anonymize`` did, written as JSON."""

    version: str = __version__
    files: int = 0
    frames: int = 0
    faces: int = 0
    fallbacks: int = 0
    fallback_reasons: Counter = field(default_factory=Counter)
    failed: list[dict[str, str]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    stage_ms_total: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall_s: float = 0.0
    config: dict = field(default_factory=dict)
    #: What the detector really runs ("int8", or "fp32" if the int8 model could not be built).
    detector_precision: str | None = None

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.faces += len(result.faces)
        for face in result.faces:
            if face.fallback_reason:
                self.fallbacks += 1
                self.fallback_reasons[face.fallback_reason.split(":")[0]] += 1
        for stage, ms in result.timings.items():
            self.stage_ms_total[stage] += ms

    def as_json(self) -> dict:
        data = asdict(self)
        data["fallback_reasons"] = dict(self.fallback_reasons)
        data["stage_ms_per_frame"] = {
            k: round(v / self.frames, 3) if self.frames else 0.0
            for k, v in self.stage_ms_total.items()
        }
        data["stage_ms_total"] = {k: round(v, 3) for k, v in self.stage_ms_total.items()}
        data["frames_per_s"] = round(self.frames / self.wall_s, 3) if self.wall_s else 0.0
        return data


def collect_inputs(
    paths: list[Path],
) -> tuple[list[tuple[Path, Path]], list[dict[str, str]]]:
    """(file, the root its output path is relative to) to process, folders expanded and sorted,
    and the inputs that do not exist."""
    files, missing = [], []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
            )
            files += [(p, path) for p in found]
        elif path.is_file():
            files.append((path, path.parent))
        else:
            missing.append({"path": str(path), "error": "no such file or folder"})
    return files, missing


def output_path(source: Path, root: Path, out: Path, single_file: bool) -> Path:
    if single_file:
        return out
    relative = source.relative_to(root) if source.is_relative_to(root) else Path(source.name)
    if source.suffix.lower() in VIDEO_SUFFIXES and source.suffix.lower() not in {".mp4", ".avi"}:
        relative = relative.with_suffix(".mp4")
    return out / relative


def read_image(path: Path) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError(f"{path}: cannot decode image (corrupt, truncated or not an image)")
    return image


def write_image(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise InputError(f"{path}: cannot encode the result as {path.suffix}")
    write_bytes_atomic(path, encoded.tobytes())


def video_frames(capture: cv2.VideoCapture, batch: int) -> Iterator[list[np.ndarray]]:
    frames: list[np.ndarray] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
        if len(frames) == batch:
            yield frames
            frames = []
    if frames:
        yield frames


def process_video(
    anonymizer: Anonymizer, source: Path, target: Path, summary: Summary, batch: int, progress
) -> None:
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise InputError(f"{source}: cannot open video (corrupt or unsupported codec)")
    expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    count = 0
    try:
        for frames in video_frames(capture, batch):
            for result in anonymizer.process_batch(frames):
                if writer is None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    height, width = result.image.shape[:2]
                    fourcc = cv2.VideoWriter_fourcc(
                        *("MJPG" if target.suffix == ".avi" else "mp4v")
                    )
                    writer = cv2.VideoWriter(str(target), fourcc, fps, (width, height))
                    if not writer.isOpened():
                        raise InputError(f"{target}: cannot open a video writer")
                writer.write(result.image)
                summary.add(result)
                count += 1
                progress.update(1)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if count == 0:
        raise InputError(f"{source}: no decodable frames")
    if expected and count < expected - 1:
        raise InputError(
            f"{source}: only {count} of {expected} frames could be decoded "
            f"(truncated?); the {count} frames read were written to {target}"
        )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    config = AnonymizerConfig(
        method=args.method,
        region=args.region,
        fallback_method=args.fallback,
        detector=args.detector,
        detector_settings=DetectorSettings(
            score_threshold=args.threshold,
            min_face_size=args.min_face,
            precision=args.detector_precision,
        ),
        landmarks=args.landmarks,
        landmark_weights=str(args.landmark_weights) if args.landmark_weights else None,
        model=str(args.model) if args.model else None,
        engine=args.engine,
        device=args.device,
        identity=parse_identity(args.identity, args.seed),
        methods=MethodSettings(blur_kernel=args.blur_kernel, pixelate_cells=args.pixelate_cells),
    )
    files, failed = collect_inputs(args.inputs)
    single = len(args.inputs) == 1 and args.inputs[0].is_file() and bool(args.output.suffix)
    image_anonymizer = Anonymizer(config)
    video_anonymizer = None
    summary = Summary(
        failed=failed,
        config=asdict(config),
        detector_precision=getattr(image_anonymizer.detector, "precision", None),
    )
    total = sum(1 for f, _ in files if f.suffix.lower() in IMAGE_SUFFIXES)
    for f, _ in files:
        if f.suffix.lower() in VIDEO_SUFFIXES:
            cap = cv2.VideoCapture(str(f))
            total += int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            cap.release()
    start = time.perf_counter()
    with tqdm(
        total=total, unit="frame", disable=args.no_progress or None, file=sys.stderr
    ) as progress:
        for source, root in files:
            target = output_path(source, root, args.output, single)
            if target.resolve() == source.resolve():
                summary.failed.append(
                    {"path": str(source), "error": "output would overwrite input"}
                )
                continue
            try:
                if source.suffix.lower() in VIDEO_SUFFIXES:
                    if video_anonymizer is None:
                        video_anonymizer = Anonymizer(
                            replace(config, hold_frames=args.hold_frames),
                            detector=image_anonymizer.detector,
                            landmarker=image_anonymizer.landmarker,
                            engine=image_anonymizer.engine,
                        )
                    video_anonymizer.reset()
                    process_video(video_anonymizer, source, target, summary, args.batch, progress)
                else:
                    image_anonymizer.reset()
                    result = image_anonymizer.process(read_image(source))
                    write_image(target, result.image)
                    summary.add(result)
                    progress.update(1)
                summary.files += 1
                summary.outputs.append(str(target))
            except CiaganError as exc:
                summary.failed.append({"path": str(source), "error": str(exc)})
                print(f"ciagan anonymize: skipped {source}: {exc}", file=sys.stderr)
            except Exception as exc:  # e.g. a detector crash: that input yields no output frame
                log.exception("failed on %s", source)
                summary.failed.append({"path": str(source), "error": f"internal error: {exc}"})
                print(
                    f"ciagan anonymize: skipped {source}: internal error: {exc}", file=sys.stderr
                )
    summary.wall_s = round(time.perf_counter() - start, 3)
    summary_path = args.summary or (
        args.output.with_suffix(".summary.json") if single else args.output / "summary.json"
    )
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary.as_json(), indent=2) + "\n")
    print(
        f"{summary.files} files, {summary.frames} frames, {summary.faces} faces "
        f"({summary.fallbacks} by fallback), {len(summary.failed)} failed; "
        f"summary: {summary_path}"
    )
    return 1 if summary.failed or not files else 0
