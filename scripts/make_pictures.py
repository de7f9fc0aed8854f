#!/usr/bin/env python3
"""The README's before/after picture, from the bundled public-domain example.

Run from the project root: ``python scripts/make_pictures.py``. It anonymizes
``examples/astronaut.png`` (NASA's portrait of Eileen Collins, public domain) through the real
pipeline with the default method and with pixelate, and writes the three panels side by side,
labelled, to ``docs/images/before_after.jpg``. Only that portrait is used: no CelebA image may
appear in a committed picture. ``--check`` compares against the committed picture instead of
writing it (exit 1 when it is out of date).

``--model M.safetensors`` shows a trained generator on the same portrait instead: the input and
three of the model's identities, into ``docs/images/starter_model.jpg`` (docs/starter_model.md).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ciagan_core.identity import IdentityConfig  # noqa: E402
from ciagan_core.pipeline import Anonymizer, AnonymizerConfig  # noqa: E402

EXAMPLE = ROOT / "examples" / "astronaut.png"
OUTPUT = ROOT / "docs" / "images" / "before_after.jpg"
STARTER_OUTPUT = ROOT / "docs" / "images" / "starter_model.jpg"
PANEL = 320  # pixels per side of each panel
#: A panel differs from the committed one when its mean absolute difference exceeds this (JPEG
#: and library versions move a few levels, a changed method moves tens).
TOLERANCE = 6.0


def panels(model: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """(label, image) for the input and each method (or each of ``model``'s shown
    identities), at PANEL x PANEL."""
    frame = cv2.imread(str(EXAMPLE), cv2.IMREAD_COLOR)
    if frame is None:
        raise SystemExit(f"cannot read {EXAMPLE}")
    default = AnonymizerConfig()
    shown = [("input", frame)]
    if model is None:
        configs = [
            (f"{default.method} (default)", default),
            ("pixelate", replace(default, method="pixelate")),
        ]
    else:
        configs = [
            (
                f"ciagan, identity {identity}",
                replace(
                    default,
                    method="ciagan",
                    model=str(model),
                    identity=IdentityConfig(policy="fixed", identity=identity),
                ),
            )
            for identity in (0, 40, 80)
        ]
    for label, config in configs:
        result = Anonymizer(config).process(frame)
        if model is not None and not (
            result.faces and all(f.method == "ciagan" for f in result.faces)
        ):
            raise SystemExit(f"{label}: the face was not generated ({result.faces})")
        shown.append((label, result.image))
    return [
        (label, cv2.resize(image, (PANEL, PANEL), interpolation=cv2.INTER_AREA))
        for label, image in shown
    ]


def picture(model: Path | None = None) -> np.ndarray:
    """The panels side by side with a label strip under each."""
    strip = 28
    tiles = []
    for label, image in panels(model):
        tile = np.full((PANEL + strip, PANEL, 3), 255, np.uint8)
        tile[:PANEL] = image
        size = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)[0]
        origin = ((PANEL - size[0]) // 2, PANEL + (strip + size[1]) // 2)
        cv2.putText(tile, label, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    gap = np.full((PANEL + strip, 6, 3), 255, np.uint8)
    row = [tiles[0]]
    for tile in tiles[1:]:
        row += [gap, tile]
    return np.concatenate(row, axis=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed picture")
    parser.add_argument("--output", type=Path, help=f"default: {OUTPUT.relative_to(ROOT)}")
    parser.add_argument(
        "--model",
        type=Path,
        help=f"show this generator's faces instead (default output: "
        f"{STARTER_OUTPUT.relative_to(ROOT)})",
    )
    args = parser.parse_args()
    args.output = args.output or (OUTPUT if args.model is None else STARTER_OUTPUT)
    made = picture(args.model)
    if args.check:
        committed = cv2.imread(str(args.output), cv2.IMREAD_COLOR)
        if committed is None or committed.shape != made.shape:
            print(f"{args.output}: missing or of another size; run scripts/make_pictures.py")
            return 1
        difference = float(np.abs(committed.astype(np.int16) - made).mean())
        if difference > TOLERANCE:
            print(f"{args.output} is out of date (mean difference {difference:.1f})")
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), made, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
