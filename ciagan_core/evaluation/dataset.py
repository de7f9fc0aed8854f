"""Labelled face photos for evaluation: a CSV like ``celeba_faces/faces.csv`` or one folder per
identity, the identity split that keeps tuning and reporting apart, and seeded sampling."""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ciagan_core.errors import InputError
from ciagan_core.frames import IMAGE_SUFFIXES

BOX_COLUMNS = ("box_x0", "box_y0", "box_x1", "box_y1")
IDENTITY_COLUMNS = ("celeba_identity", "identity")
SPLITS = ("all", "tune", "holdout")
#: The smallest labelled face box accepted (px).
MIN_BOX = 8.0


@dataclass(frozen=True)
class LabelledFace:
    """One photo of a known person; ``box`` (x0, y0, x1, y1) is where the face is, if known."""

    path: Path
    identity: str
    box: tuple[float, float, float, float] | None = None


def load_labelled_faces(source: str | Path) -> list[LabelledFace]:
    """Read a CSV (``file``, ``celeba_identity``, optional box columns) or a folder with one
    subfolder per identity. Every listed file must exist; at least two identities are needed."""
    source = Path(source)
    if source.is_dir():
        faces = _from_folder(source)
    elif source.is_file():
        faces = _from_csv(source)
    else:
        raise InputError(f"{source}: no such CSV file or folder")
    identities = {f.identity for f in faces}
    if len(identities) < 2:
        raise InputError(
            f"{source}: {len(faces)} photos of {len(identities)} identity; identification needs "
            "photos of at least 2 identities"
        )
    return faces


def _from_csv(path: Path) -> list[LabelledFace]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is fine
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 CSV file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    import io

    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        identity_column = next((c for c in IDENTITY_COLUMNS if c in columns), None)
        if "file" not in columns or identity_column is None:
            raise InputError(
                f"{path}: needs the columns 'file' and 'celeba_identity' (or 'identity'); "
                f"found {', '.join(sorted(columns)) or 'none'}"
            )
        boxes = [c for c in BOX_COLUMNS if c in columns]
        if boxes and len(boxes) != len(BOX_COLUMNS):
            raise InputError(
                f"{path}: box columns must be all of {', '.join(BOX_COLUMNS)} or none; "
                f"missing {', '.join(c for c in BOX_COLUMNS if c not in columns)}"
            )
        rows = list(reader)
    if not rows:
        raise InputError(f"{path}: no rows")
    # Files are relative to the CSV's folder, or to its images/ folder (the shared layout).
    base = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    faces, missing, seen = [], [], set()
    for line, row in enumerate(rows, start=2):
        name, identity = (row.get("file") or "").strip(), (row.get(identity_column) or "").strip()
        if not name or not identity:
            raise InputError(f"{path}, line {line}: empty 'file' or '{identity_column}'")
        file = Path(name) if Path(name).is_absolute() else base / name
        if not file.is_file():
            missing.append(str(file))
            continue
        box = None
        if boxes:
            try:
                box = tuple(float(row[c]) for c in BOX_COLUMNS)
            except (TypeError, ValueError):
                raise InputError(f"{path}, line {line}: box values must be numbers") from None
            if not all(np.isfinite(box)) or min(box[2] - box[0], box[3] - box[1]) < MIN_BOX:
                raise InputError(
                    f"{path}, line {line}: box {box} is not a face box (at least {MIN_BOX} px)"
                )
        if (file.resolve(), box) in seen:
            raise InputError(f"{path}, line {line}: {name} is listed twice")
        seen.add((file.resolve(), box))
        faces.append(LabelledFace(file, identity, box))
    if missing:
        raise InputError(f"{path}: {len(missing)} listed files do not exist (first: {missing[0]})")
    return faces


def _from_folder(folder: Path) -> list[LabelledFace]:
    faces = [
        LabelledFace(file, sub.name)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir())
        for file in sorted(sub.iterdir())
        if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not faces:
        raise InputError(f"{folder}: no images in identity subfolders ({folder}/ID/*.jpg)")
    return faces


def holdout_identity(identity: str) -> bool:
    """The fixed identity split: about half of all identities are held out from tuning."""
    return hashlib.sha256(f"ciagan-eval:{identity}".encode()).digest()[0] % 2 == 1


def split_identities(faces: list[LabelledFace], split: str) -> list[LabelledFace]:
    """``all``, or the ``tune`` / ``holdout`` half of the identities (a fixed hash split)."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "all":
        return faces
    return [f for f in faces if holdout_identity(f.identity) == (split == "holdout")]


def sample_faces(
    faces: list[LabelledFace],
    max_identities: int = 0,
    max_photos: int = 0,
    max_probes: int = 0,
    seed: int = 0,
) -> tuple[list[LabelledFace], list[int]]:
    """Seeded choice of what to evaluate: up to ``max_identities`` identities, up to
    ``max_photos`` photos of each (the gallery), and up to ``max_probes`` of those photos per
    identity as probes (0: no limit). Returns the photos and the indices (into them) of the
    probes. Only identities with two or more photos give probes: a probe's own photo is left
    out of its identity's gallery."""
    by_identity: dict[str, list[LabelledFace]] = defaultdict(list)
    for face in faces:
        by_identity[face.identity].append(face)
    rng = np.random.default_rng(seed)

    def pick(items: list, limit: int) -> list:
        if not limit or len(items) <= limit:
            return list(items)
        return [items[i] for i in sorted(rng.choice(len(items), size=limit, replace=False))]

    names = pick(sorted(by_identity), max_identities)
    if len(names) < 2:
        raise InputError(f"only {len(names)} identity left to evaluate; need at least 2")
    chosen: list[LabelledFace] = []
    probes: list[int] = []
    for name in names:
        photos = pick(by_identity[name], max_photos)
        if len(photos) >= 2:
            probes += pick(list(range(len(chosen), len(chosen) + len(photos))), max_probes)
        chosen += photos
    if not probes:
        raise InputError("no identity has two or more photos: nothing can be a probe")
    return chosen, probes
