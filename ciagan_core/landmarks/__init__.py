"""68-point landmarkers behind one interface, chosen by name: dlib, mesh, face_alignment."""

from __future__ import annotations

from pathlib import Path

from ciagan_core.errors import ConfigError
from ciagan_core.landmarks.base import Landmarker

LANDMARKERS = ("dlib", "mesh", "face_alignment")


def create_landmarker(
    name: str, weights_path: str | Path | None = None, device: str = "cpu"
) -> Landmarker:
    """Build the landmarker registered under ``name``."""
    if name == "dlib":
        from ciagan_core.landmarks.dlib68 import DlibLandmarker

        return DlibLandmarker(weights_path)
    if name == "mesh":
        from ciagan_core.landmarks.mesh import MeshLandmarker

        return MeshLandmarker(weights_path, device=device)
    if name == "face_alignment":
        from ciagan_core.landmarks.fan import FanLandmarker

        return FanLandmarker(weights_path, device=device)
    raise ConfigError(f"unknown landmarker {name!r}; choose one of {', '.join(LANDMARKERS)}")


__all__ = ["LANDMARKERS", "Landmarker", "create_landmarker"]
