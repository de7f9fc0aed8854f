"""Privacy and quality evaluation: how well anonymized faces defeat a face recognizer.

The protocol (REFERENCE §8) measures, on labelled photos, the identification rate (dlib's 128-d
face descriptor, nearest mean identity over the untouched photos), the detection rate (dlib HOG
and CenterFace still find the face), the faces the pipeline missed, and FID.
"""

from ciagan_core.evaluation.dataset import LabelledFace, load_labelled_faces, split_identities
from ciagan_core.evaluation.protocol import EvalSettings, MethodVariant, evaluate

__all__ = [
    "EvalSettings",
    "LabelledFace",
    "MethodVariant",
    "evaluate",
    "load_labelled_faces",
    "split_identities",
]
