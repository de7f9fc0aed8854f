"""Training batches from a prepared set, rendered exactly as inference renders its input.

At start every crop is decoded once and, with the landmark drawing and mask rendered from its
landmarks by the functions inference uses (``alignment.render_landmark_image``,
``render_mask_image``), resized to the 144 px image that inference centre-crops to 128. The
uint8 arrays then live on the training device, so making a batch is an index and a (jittered)
window: nothing on the CPU slows a GPU step down.

A batch holds, per sample: the source face, its drawing and mask; a target identity other than
the source's (the one-hot the generator is conditioned on) and a real photo of that identity
(for the identity loss); and a pair for the siamese network, half of them the same identity.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ciagan_core.alignment import (
    CROP_HEIGHT,
    CROP_WIDTH,
    MASK_THRESHOLD,
    NET_OFFSET,
    NET_SIZE,
    render_landmark_image,
    render_mask_image,
    to_resized,
)
from ciagan_core.errors import InputError
from ciagan_core.training.prepare import load_prepared

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One training batch on the device; images float [B, C, 128, 128] in [0, 1]."""

    face: torch.Tensor
    landmarks: torch.Tensor
    #: 1 where the generator replaces the face.
    mask: torch.Tensor
    #: Target identity index [B] (never the source's).
    target: torch.Tensor
    #: A real photo of the target identity.
    target_face: torch.Tensor
    #: Siamese pairs: faces a, b and 1.0 where they show the same identity.
    pair_a: torch.Tensor
    pair_b: torch.Tensor
    same: torch.Tensor

    def generator_input(self) -> torch.Tensor:
        return torch.cat([self.landmarks, self.face * (1 - self.mask)], dim=1)


def _render(folder: Path, row: dict[str, str], points: np.ndarray) -> tuple[np.ndarray, ...]:
    path = folder / row["crop"]
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: unreadable crop in the prepared set (run ciagan prepare again)")
    if image.shape[:2] != (CROP_HEIGHT, CROP_WIDTH):
        raise InputError(f"{path}: {image.shape[1]}x{image.shape[0]}, expected 178x218")
    face = to_resized(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    drawing = to_resized(render_landmark_image(points))
    mask = to_resized(render_mask_image(points))
    return face, drawing, mask


class TrainingSet:
    """The ``train`` (or ``eval``) rows of a prepared set, rendered and held on ``device``."""

    def __init__(
        self,
        folder: str | Path,
        split: str = "train",
        device: str | torch.device = "cpu",
        workers: int = 0,
        identities: Sequence[str] | None = None,
    ):
        folder = Path(folder)
        rows, points = load_prepared(folder)
        keep = [i for i, row in enumerate(rows) if row.get("split", "train") == split]
        if not keep:
            raise InputError(f"{folder}: no {split!r} photos in the prepared set")
        self.rows = [rows[i] for i in keep]
        self.points = points[keep]
        names = sorted({row["identity"] for row in self.rows})
        if identities is None:
            if len(names) < 2:
                raise InputError(
                    f"{folder}: {len(self.rows)} {split} photos of {len(names)} identity; "
                    "training needs at least 2 identities (a target must differ from the source)"
                )
            identities = names
        self.identities = list(identities)
        index = {name: i for i, name in enumerate(self.identities)}
        self.labels = np.array([index.get(row["identity"], -1) for row in self.rows])
        self.folder = folder
        threads = workers or os.cpu_count() or 1
        with ThreadPoolExecutor(threads) as pool:
            rendered = list(
                pool.map(
                    lambda item: _render(folder, *item), zip(self.rows, self.points, strict=True)
                )
            )
        self.device = torch.device(device)
        faces, drawings, masks = (np.stack(parts) for parts in zip(*rendered, strict=True))
        # uint8 NHWC on the device: 144 x 144 x 7 bytes per photo.
        self.faces = torch.from_numpy(faces).to(self.device)
        self.drawings = torch.from_numpy(drawings).to(self.device)
        self.masks = torch.from_numpy(masks[..., None]).to(self.device)
        self.by_identity = [np.flatnonzero(self.labels == i) for i in range(len(self.identities))]
        single = [self.identities[i] for i, rows in enumerate(self.by_identity) if len(rows) == 1]
        if single:
            log.warning(
                "%d identities have one photo (%s...): their siamese 'same' pairs are the photo "
                "with itself",
                len(single),
                ", ".join(single[:3]),
            )
        digest = hashlib.sha256()
        for row, points in zip(self.rows, self.points, strict=True):
            digest.update(f"{row['crop']}|{row['identity']}|".encode())
            digest.update(np.ascontiguousarray(points, np.float32).tobytes())
        #: Identifies the training photos and their landmarks (checked when resuming).
        self.digest = digest.hexdigest()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def num_identities(self) -> int:
        return len(self.identities)

    def _windows(
        self, store: torch.Tensor, index: np.ndarray, dx: np.ndarray, dy: np.ndarray
    ) -> torch.Tensor:
        """[B, C, 128, 128] float windows at NET_OFFSET + (dx, dy) of ``store``[index]."""
        span = torch.arange(NET_SIZE, device=self.device)
        rows = torch.as_tensor(NET_OFFSET + dy, device=self.device)[:, None] + span
        cols = torch.as_tensor(NET_OFFSET + dx, device=self.device)[:, None] + span
        idx = torch.as_tensor(index, device=self.device)[:, None, None]
        picked = store[idx, rows[:, :, None], cols[:, None, :]]  # [B, 128, 128, C]
        return picked.permute(0, 3, 1, 2).float().div_(255.0)

    def _other_photo(self, rng: np.random.Generator, label: int, avoid: int) -> int:
        choices = self.by_identity[label]
        if len(choices) > 1:
            choices = choices[choices != avoid]
        return int(rng.choice(choices))

    def batch(self, rng: np.random.Generator, size: int, jitter: int, flip: bool) -> Batch:
        """A random batch (numpy ``rng`` decides everything, so a seed reproduces it)."""
        n_ids = self.num_identities
        src = rng.integers(0, len(self), size)
        labels = self.labels[src]
        target = (labels + rng.integers(1, n_ids, size)) % n_ids  # never the source's
        target_photo = np.array([int(rng.choice(self.by_identity[t])) for t in target])
        same = rng.random(size) < 0.5
        partner = np.array(
            [
                self._other_photo(rng, labels[i], src[i])
                if same[i]
                else int(
                    rng.choice(self.by_identity[(labels[i] + rng.integers(1, n_ids)) % n_ids])
                )
                for i in range(size)
            ]
        )
        dx, dy = (rng.integers(-jitter, jitter + 1, size) for _ in range(2))
        zero = np.zeros(size, np.int64)
        face = self._windows(self.faces, src, dx, dy)
        drawing = self._windows(self.drawings, src, dx, dy)
        mask = self._windows(self.masks, src, dx, dy)
        mask = ((1.0 - mask) > MASK_THRESHOLD).float()
        if flip:
            mirror = torch.as_tensor(rng.random(size) < 0.5, device=self.device)
            # A mirrored face's landmark drawing and mask are the mirrored drawing and mask.
            face, drawing, mask = (
                torch.where(mirror[:, None, None, None], t.flip(-1), t)
                for t in (face, drawing, mask)
            )
        return Batch(
            face=face,
            landmarks=drawing,
            mask=mask,
            target=torch.as_tensor(target, device=self.device),
            target_face=self._windows(self.faces, target_photo, zero, zero),
            pair_a=self._windows(self.faces, src, zero, zero),
            pair_b=self._windows(self.faces, partner, zero, zero),
            same=torch.as_tensor(same, dtype=torch.float32, device=self.device),
        )

    def probe(self, count: int) -> Batch:
        """Fixed probe faces (evenly spread over the set), centred, for sample grids."""
        src = np.linspace(0, len(self) - 1, count).round().astype(int)
        zero = np.zeros(count, np.int64)
        face = self._windows(self.faces, src, zero, zero)
        mask = ((1.0 - self._windows(self.masks, src, zero, zero)) > MASK_THRESHOLD).float()
        labels = torch.as_tensor(self.labels[src], device=self.device)
        return Batch(
            face=face,
            landmarks=self._windows(self.drawings, src, zero, zero),
            mask=mask,
            target=labels,
            target_face=face,
            pair_a=face,
            pair_b=face,
            same=torch.ones(count, device=self.device),
        )
