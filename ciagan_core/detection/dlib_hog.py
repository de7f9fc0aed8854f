"""dlib's HOG + linear SVM frontal face detector (the detector CIAGAN's data was made with)."""

from __future__ import annotations

import cv2
import numpy as np

from ciagan_core.detection.base import DetectorSettings, keep_large_enough
from ciagan_core.errors import BackendUnavailableError, ConfigError
from ciagan_core.faces import FaceBox

#: dlib's SVM margin: its default, 0, is the highest accepted. On 80 shared CelebA photos it
#: finds a face in all 80 at -0.5 and 0, in 75 at 0.5 and in 63 at 1.0.
MAX_THRESHOLD = 0.0


def check_threshold(threshold: float) -> None:
    """ConfigError unless ``threshold`` is a dlib margin that still finds faces."""
    if not -1.0 <= threshold <= MAX_THRESHOLD:  # also refuses NaN
        raise ConfigError(
            f"dlib's threshold is an SVM margin in -1..{MAX_THRESHOLD:g}, got {threshold} "
            "(default 0; higher values miss faces, which would pass untouched)"
        )


class DlibHogDetector:
    """``dlib.get_frontal_face_detector`` with upsampling and an SVM-margin threshold."""

    name = "dlib"

    def __init__(self, settings: DetectorSettings | None = None):
        try:
            import dlib
        except ImportError as exc:
            raise BackendUnavailableError(
                "the dlib detector needs dlib (pip install dlib-bin)"
            ) from exc
        self.settings = settings or DetectorSettings()
        self.threshold = float(self.settings.score_threshold or 0.0)
        check_threshold(self.threshold)
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        rects, scores, _ = self._detector.run(gray, self.settings.upsample, self.threshold)
        height, width = gray.shape
        boxes = [
            FaceBox(
                float(max(r.left(), 0)),
                float(max(r.top(), 0)),
                float(min(r.right() + 1, width)),
                float(min(r.bottom() + 1, height)),
                float(s),
                self.name,
            )
            for r, s in zip(rects, scores, strict=True)
        ]
        return keep_large_enough(boxes, self.settings.min_face_size)
