"""Benchmark frames: real CelebA faces (from ../shared, never committed) on a real background."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"


def celeba_rows(shared: Path = SHARED) -> list[dict[str, str]]:
    with (shared / "data" / "celeba_faces" / "faces.csv").open() as handle:
        return list(csv.DictReader(handle))


def face_patch(shared: Path, row: dict[str, str]) -> np.ndarray:
    """A square cut around the labelled face, 1.8x the box, from a CelebA photo."""
    image = cv2.imread(str(shared / "data" / "celeba_faces" / "images" / row["file"]))
    x0, y0, x1, y1 = (float(row[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1"))
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.9 * max(x1 - x0, y1 - y0)
    h, w = image.shape[:2]
    a, b = int(max(cx - half, 0)), int(max(cy - half, 0))
    return image[b : int(min(cy + half, h)), a : int(min(cx + half, w))]


def make_frame(
    size: tuple[int, int], faces: int, seed: int = 0, shared: Path = SHARED
) -> np.ndarray:
    """A WxH frame with ``faces`` real faces spread over a real photo background."""
    import skimage.data

    width, height = size
    frame = cv2.resize(cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR), (width, height))
    rows = celeba_rows(shared)
    rng = np.random.default_rng(seed)
    cols = min(faces, 3)
    lines = int(np.ceil(faces / cols))
    cell_w, cell_h = width // cols, height // lines
    side = int(min(cell_w, cell_h) * 0.8)
    for i, idx in enumerate(rng.choice(len(rows), faces, replace=False)):
        patch = cv2.resize(face_patch(shared, rows[idx]), (side, side))
        x = (i % cols) * cell_w + (cell_w - side) // 2
        y = (i // cols) * cell_h + (cell_h - side) // 2
        frame[y : y + side, x : x + side] = patch
    return frame
