"""Face detectors behind one interface, chosen by name: centerface, dlib, ensemble."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ciagan_core.detection.base import Detector, DetectorSettings
from ciagan_core.errors import ConfigError


def _centerface(settings: DetectorSettings) -> Detector:
    from ciagan_core.detection.centerface import CenterFaceDetector

    return CenterFaceDetector(settings)


def _dlib(settings: DetectorSettings) -> Detector:
    from ciagan_core.detection.dlib_hog import DlibHogDetector

    return DlibHogDetector(settings)


def _ensemble(settings: DetectorSettings) -> Detector:
    from ciagan_core.detection.ensemble import EnsembleDetector

    # Member thresholds are in different units: each member keeps its own default.
    member_settings = replace(settings, score_threshold=None)
    return EnsembleDetector([_centerface(member_settings), _dlib(member_settings)])


DETECTORS: dict[str, Callable[[DetectorSettings], Detector]] = {
    "centerface": _centerface,
    "dlib": _dlib,
    "ensemble": _ensemble,
}


def create_detector(name: str, settings: DetectorSettings | None = None) -> Detector:
    """Build the detector registered under ``name``."""
    settings = settings or DetectorSettings()
    settings.validate()
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise ConfigError(
            f"unknown detector {name!r}; choose one of {', '.join(sorted(DETECTORS))}"
        ) from None
    return factory(settings)


__all__ = ["DETECTORS", "Detector", "DetectorSettings", "create_detector"]
