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

    # Member thresholds are in different units: each member keeps its own default (a
    # threshold given for the ensemble is refused by check_detector_settings).
    member_settings = replace(settings, score_threshold=None)
    return EnsembleDetector([_centerface(member_settings), _dlib(member_settings)])


DETECTORS: dict[str, Callable[[DetectorSettings], Detector]] = {
    "centerface": _centerface,
    "dlib": _dlib,
    "ensemble": _ensemble,
}


def check_detector_settings(name: str, settings: DetectorSettings) -> None:
    """ConfigError for settings that would make detector ``name`` miss faces or that it would
    ignore, before anything is built (the node checks its parameters with this at start)."""
    settings.validate()
    if name == "ensemble" and settings.score_threshold is not None:
        raise ConfigError(
            "the ensemble detector keeps each member's own default threshold (their units "
            "differ); a threshold applies to centerface or dlib"
        )
    if name == "centerface" and settings.score_threshold is not None:
        from ciagan_core.detection.centerface import check_threshold

        check_threshold(float(settings.score_threshold))
    if name == "dlib" and settings.score_threshold is not None:
        from ciagan_core.detection.dlib_hog import check_threshold as check_margin

        check_margin(float(settings.score_threshold))


def create_detector(name: str, settings: DetectorSettings | None = None) -> Detector:
    """Build the detector registered under ``name``."""
    settings = settings or DetectorSettings()
    if name in DETECTORS:
        check_detector_settings(name, settings)
    settings.validate()
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise ConfigError(
            f"unknown detector {name!r}; choose one of {', '.join(sorted(DETECTORS))}"
        ) from None
    return factory(settings)


__all__ = ["DETECTORS", "Detector", "DetectorSettings", "create_detector"]
