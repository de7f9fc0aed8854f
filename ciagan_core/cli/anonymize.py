"""``ciagan anonymize INPUT... -o OUT``: images, folders and videos, with a JSON summary."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ciagan_core import __version__
from ciagan_core.atomic_write import atomic_path, check_output_name, write_bytes_atomic
from ciagan_core.cli.pipeline_args import add_pipeline_arguments, pipeline_config
from ciagan_core.errors import CiaganError, InputError
from ciagan_core.frames import IMAGE_SUFFIXES
from ciagan_core.pipeline import STAGES, Anonymizer, FrameResult

log = logging.getLogger(__name__)

#: Failed reads in a row after which the video decoder is taken to be stuck.
STUCK_READS = 4
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
        required=True,
        help="output folder (or output file, for a single input file; a name ending in / is "
        "always a folder)",
    )
    add_pipeline_arguments(p)
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
    #: Files in the input folders that are neither images nor videos (not processed).
    skipped: list[str] = field(default_factory=list)
    #: Per video, the indices of frames that could not be decoded (skipped, not written).
    unreadable_frames: dict[str, list[int]] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    stage_ms_total: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall_s: float = 0.0
    config: dict = field(default_factory=dict)
    #: What the detector really runs ("int8", or "fp32" if the int8 model could not be built).
    detector_precision: str | None = None
    #: True when the run was stopped (Ctrl-C) before every input was done.
    interrupted: bool = False

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


@dataclass(frozen=True)
class Job:
    """One input file and where its anonymized version goes."""

    source: Path
    target: Path

    @property
    def video(self) -> bool:
        return self.source.suffix.lower() in VIDEO_SUFFIXES


def _walk(folder: Path) -> Iterator[Path]:
    """Every file below ``folder``, following symlinked folders once each, sorted."""
    seen: set[str] = set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(names):
            yield Path(top) / name


def collect_inputs(
    paths: list[Path],
) -> tuple[list[Path], list[dict[str, str]], list[str]]:
    """The files to process (folders expanded, sorted, each file once), the inputs that do not
    exist, and the files in folders that are neither images nor videos."""
    files: list[Path] = []
    missing: list[dict[str, str]] = []
    skipped: list[str] = []
    known = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    for path in paths:
        if path.is_dir():
            for file in _walk(path):
                if file.name.startswith("."):
                    continue  # hidden files, our own partial outputs among them
                if not file.is_file():  # a FIFO, a socket, a broken link: never opened
                    skipped.append(f"{file} (not a regular file)")
                elif file.suffix.lower() in known:
                    files.append(file)
                else:
                    skipped.append(str(file))
        elif path.is_file():
            files.append(path)
        else:
            missing.append({"path": str(path), "error": "no such file or folder"})
    unique, seen = [], set()
    for file in files:  # a path named twice, or also inside a named folder, is done once
        if os.path.abspath(file) not in seen:
            seen.add(os.path.abspath(file))
            unique.append(file)
    return unique, missing, skipped


def _output_relative(source: Path, root: str) -> Path:
    relative = Path(os.path.relpath(os.path.abspath(source), root))
    if source.suffix.lower() in VIDEO_SUFFIXES and source.suffix.lower() not in {".mp4", ".avi"}:
        relative = relative.with_suffix(".mp4")  # re-encoded as MPEG-4
    return relative


def plan_jobs(files: list[Path], inputs: list[Path], out: Path, single_file: bool) -> list[Job]:
    """Every output path, decided before anything is written. Outputs keep the inputs' folder
    structure below their common folder (one folder input: below that folder). Two outputs on
    one path, an output on an input or inside an input folder, or a suffix the output cannot
    be written as is an InputError."""
    if single_file:
        jobs = [Job(files[0], out)]
    else:
        if len(inputs) == 1 and inputs[0].is_dir():
            root = os.path.abspath(inputs[0])
        else:
            root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in inputs])
        jobs = [Job(f, out / _output_relative(f, root)) for f in files]
    sources = {os.path.realpath(f) for f in files}
    folders = [os.path.realpath(p) for p in inputs if p.is_dir()]
    targets: dict[str, Path] = {}
    for job in jobs:
        target = os.path.realpath(job.target)
        if target in targets:
            raise InputError(
                f"{targets[target]} and {job.source} would both be written to {job.target}; "
                "rename one or anonymize them separately"
            )
        targets[target] = job.source
        if target in sources:
            raise InputError(f"the output for {job.source} would overwrite the input {job.target}")
        if _inside_any(target, folders):
            raise InputError(
                f"the output for {job.source} would be written into an input folder "
                f"({job.target}); choose an output folder outside the inputs"
            )
        suffix = job.target.suffix.lower()
        allowed = {".mp4", ".avi"} if job.video else IMAGE_SUFFIXES
        if suffix not in allowed:
            raise InputError(
                f"{job.target}: cannot write {'a video' if job.video else 'an image'} as "
                f"{suffix or 'a file without suffix'}; use one of {', '.join(sorted(allowed))}"
            )
    return jobs


def _inside_any(path: str, folders: list[str]) -> bool:
    return any(path == folder or path.startswith(folder + os.sep) for folder in folders)


def read_image(path: Path) -> np.ndarray:
    """The image as it is shown: a photo whose EXIF orientation says "rotate" (phones store
    portraits sideways; JPEG, PNG, WebP and TIFF can carry the tag) is turned upright, so that
    detection sees upright faces and the output (written without EXIF) shows as the input did.
    Depth and grey are kept, and alpha (an image with alpha keeps its stored orientation)."""
    data = np.fromfile(path, dtype=np.uint8)
    # These flags keep depth and colour and apply the orientation (IMREAD_UNCHANGED ignores it).
    image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if data.size else None
    if image is None:
        raise InputError(f"{path}: cannot decode image (corrupt, truncated or not an image)")
    if data[:3].tobytes() != b"\xff\xd8\xff":  # JPEG has no alpha; the others may
        stored = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if stored is not None and stored.ndim == 3 and stored.shape[2] == 4:
            image = stored
    return image


def write_image(path: Path, image: np.ndarray) -> None:
    suffix = path.suffix.lower() or ".png"
    ok, encoded = cv2.imencode(".jpg" if suffix in {".jfif", ".jpe"} else suffix, image)
    if not ok:
        raise InputError(f"{path}: cannot encode the result as {path.suffix}")
    write_bytes_atomic(path, encoded.tobytes())


def video_frames(
    capture: cv2.VideoCapture, batch: int, unreadable: list[int]
) -> Iterator[list[np.ndarray]]:
    """Batches of decoded frames. A frame that cannot be decoded is skipped and its index added
    to ``unreadable``; reading goes on after it, up to the container's frame count."""
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    frames: list[np.ndarray] = []
    index = failures_in_row = 0
    while True:
        ok, frame = capture.read()
        if ok:
            frames.append(frame)
            index += 1
            failures_in_row = 0
            if len(frames) == batch:
                yield frames
                frames = []
            continue
        if index >= total:
            break
        unreadable.append(index)
        index += 1
        failures_in_row += 1
        # A failed read normally moves past the bad frame, and reading on finds the next good
        # one. A decoder that keeps failing is stuck on the first bad frame: only that one is
        # lost, and reading resumes right after it (a seek, used only here: in a damaged
        # container it can land far off).
        if failures_in_row == STUCK_READS:
            index = unreadable[-STUCK_READS] + 1
            del unreadable[-STUCK_READS + 1 :]
            failures_in_row = 0
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    if frames:
        yield frames


def process_video(
    anonymizer: Anonymizer, source: Path, target: Path, summary: Summary, batch: int, progress
) -> None:
    """Anonymize a video into ``target``: written under a temporary name and renamed when
    complete, so an interrupted or failed run leaves no complete-looking file."""
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise InputError(f"{source}: cannot open video (corrupt or unsupported codec)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    unreadable: list[int] = []
    count = 0
    try:
        with atomic_path(target, suffix=f".partial{target.suffix}") as partial:
            writer = None
            try:
                for frames in video_frames(capture, batch, unreadable):
                    for result in anonymizer.process_batch(frames):
                        if writer is None:
                            height, width = result.image.shape[:2]
                            fourcc = cv2.VideoWriter_fourcc(
                                *("MJPG" if target.suffix == ".avi" else "mp4v")
                            )
                            writer = cv2.VideoWriter(str(partial), fourcc, fps, (width, height))
                            if not writer.isOpened():
                                raise InputError(f"{target}: cannot open a video writer")
                        writer.write(result.image)
                        summary.add(result)
                        count += 1
                        progress.update(1)
            finally:
                if writer is not None:
                    writer.release()
            if count == 0:
                raise InputError(f"{source}: no decodable frames")
    finally:
        capture.release()
        if unreadable:
            summary.unreadable_frames[str(source)] = unreadable
    if unreadable:
        print(
            f"ciagan anonymize: {source}: {len(unreadable)} unreadable frames skipped "
            f"(listed in the summary)",
            file=sys.stderr,
        )


def make_output_folder(folder: Path) -> None:
    """Create ``folder`` and make sure it can be written to; one-line InputError if not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot create the output folder ({exc.strerror})") from None
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(f"{folder}: cannot write to the output folder ({exc.strerror})") from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    folder_named = args.output.endswith(("/", os.sep))
    args.output = Path(args.output)
    config = pipeline_config(args)
    config.validate()
    if args.batch < 1 or not 0 <= args.hold_frames <= 300:
        raise InputError("--batch must be >= 1 and --hold-frames in 0..300")
    files, failed, skipped = collect_inputs(args.inputs)
    for path in skipped:
        print(f"ciagan anonymize: skipped {path}: not an image or video file", file=sys.stderr)
    if not files:
        missing = [f["path"] for f in failed]
        raise InputError(
            "nothing to anonymize: "
            + (
                f"no such file or folder: {', '.join(missing)}"
                if missing
                else "no image or video files in " + ", ".join(str(p) for p in args.inputs)
            )
            + (f" ({len(skipped)} other files skipped)" if skipped else "")
        )
    # One input file and an output name with a suffix (not an existing folder, no trailing
    # slash): the output is that file.
    single = (
        len(args.inputs) == 1
        and args.inputs[0].is_file()
        and bool(args.output.suffix)
        and not args.output.is_dir()
        and not folder_named
    )
    jobs = plan_jobs(files, args.inputs, args.output, single)
    summary_path = args.summary or (
        args.output.with_suffix(".summary.json") if single else args.output / "summary.json"
    )
    summary_real = os.path.realpath(summary_path)
    if (
        summary_real
        in {os.path.realpath(p) for p in files} | {os.path.realpath(j.target) for j in jobs}
        or _inside_any(summary_real, [os.path.realpath(p) for p in args.inputs if p.is_dir()])
        or summary_path.is_dir()
    ):
        raise InputError(
            f"the summary {summary_path} would overwrite an input, an output or a folder, or "
            "land in an input folder"
        )
    make_output_folder(args.output.parent if single else args.output)
    make_output_folder(summary_path.parent)
    for target in [*(job.target for job in jobs), summary_path]:
        check_output_name(target)  # before the work, not in a traceback after it
    image_anonymizer = Anonymizer(config)
    video_anonymizer = None
    summary = Summary(
        failed=failed,
        skipped=skipped,
        # hold_frames applies to videos; independent images are never held.
        config=asdict(replace(config, hold_frames=args.hold_frames)),
        detector_precision=getattr(image_anonymizer.detector, "precision", None),
    )
    total = sum(1 for j in jobs if not j.video)
    for job in jobs:
        if job.video:
            cap = cv2.VideoCapture(str(job.source))
            total += int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            cap.release()
    start = time.perf_counter()
    try:
        with tqdm(
            total=total, unit="frame", disable=args.no_progress or None, file=sys.stderr
        ) as progress:
            for job in jobs:
                source, target = job.source, job.target
                try:
                    if job.video:
                        if video_anonymizer is None:
                            video_anonymizer = Anonymizer(
                                replace(config, hold_frames=args.hold_frames),
                                detector=image_anonymizer.detector,
                                landmarker=image_anonymizer.landmarker,
                                engine=image_anonymizer.engine,
                            )
                        video_anonymizer.reset()
                        process_video(
                            video_anonymizer, source, target, summary, args.batch, progress
                        )
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
                except Exception as exc:  # e.g. a detector crash: that input yields no output
                    log.exception("failed on %s", source)
                    summary.failed.append({"path": str(source), "error": f"internal error: {exc}"})
                    print(
                        f"ciagan anonymize: skipped {source}: internal error: {exc}",
                        file=sys.stderr,
                    )
    except KeyboardInterrupt:
        summary.interrupted = True  # the partial video was removed; say so in the summary
        raise
    finally:
        summary.wall_s = round(time.perf_counter() - start, 3)
        write_bytes_atomic(summary_path, (json.dumps(summary.as_json(), indent=2) + "\n").encode())
    print(
        f"{summary.files} files, {summary.frames} frames, {summary.faces} faces "
        f"({summary.fallbacks} by fallback), {len(summary.failed)} failed; "
        f"summary: {summary_path}"
    )
    return 1 if summary.failed else 0
