"""The pipeline's command-line options, shared by every command that anonymizes (anonymize,
eval): declared once, with the defaults of ``AnonymizerConfig`` and ``MethodSettings``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ciagan_core.detection import DETECTORS, DetectorSettings
from ciagan_core.detection.base import PRECISIONS
from ciagan_core.engines import ENGINES
from ciagan_core.identity import POLICIES, IdentityConfig
from ciagan_core.landmarks import LANDMARKERS
from ciagan_core.methods import METHODS, REGIONS, MethodSettings
from ciagan_core.pipeline import AnonymizerConfig

_CONFIG = AnonymizerConfig()
_METHODS = MethodSettings()
_DETECTION = DetectorSettings()


def add_pipeline_arguments(p: argparse.ArgumentParser, *, method: bool = True) -> None:
    """Add the method, detector, landmark, engine and identity options to ``p``."""
    if method:
        p.add_argument(
            "--method",
            choices=METHODS,
            default=_CONFIG.method,
            help=f"anonymization method (default: {_CONFIG.method}; ciagan needs --model)",
        )
        p.add_argument(
            "--region",
            choices=REGIONS,
            default=_CONFIG.region,
            help="where blur/pixelate/solid go: the grown detection box (default: face, "
            "forehead and ears; no landmarks) or the landmark mask (jaw to brows); ciagan "
            "always uses its mask",
        )
    p.add_argument(
        "--fallback",
        choices=[m for m in METHODS if m != "ciagan"],
        default=_CONFIG.fallback_method,
        help=f"method for faces without reliable landmarks (default: {_CONFIG.fallback_method})",
    )
    p.add_argument("--model", type=Path, help="generator model file (.safetensors)")
    p.add_argument(
        "--identity",
        default="per_track",
        help=f"identity policy ({', '.join(POLICIES)}), 'fixed:ID', 'pool:ID,ID,...' "
        "or a YAML file (default: per_track)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of random draws (default: 0)")
    p.add_argument("--detector", choices=sorted(DETECTORS), default=_CONFIG.detector)
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="detector score threshold (backend units; default: backend's own; centerface: "
        "in (0, 0.7], dlib: -1..0; higher misses faces; not for ensemble)",
    )
    p.add_argument(
        "--min-face",
        type=float,
        default=_DETECTION.min_face_size,
        help=f"smallest face side in pixels (default: {_DETECTION.min_face_size:g}; at most "
        "24: larger faces are identifiable)",
    )
    p.add_argument(
        "--detector-precision",
        choices=PRECISIONS,
        default=_DETECTION.precision,
        help="centerface: int8 (default; built and cached on first use, same recall, faster on "
        "CPU) or fp32 (the published model)",
    )
    p.add_argument(
        "--max-input-side",
        type=int,
        default=_DETECTION.max_input_side,
        help="centerface: scale frames whose long side exceeds this down for detection "
        "(default 0: full resolution, frames over 4K in tiles); never below what --min-face "
        "needs",
    )
    p.add_argument(
        "--landmarks",
        choices=LANDMARKERS,
        default=_CONFIG.landmarks,
        help="68-point landmarker: dlib (its model: non-commercial use only), mesh (MediaPipe's "
        "face mesh, Apache-2.0, batched ONNX on CPU or CUDA) or face_alignment "
        f"(default: {_CONFIG.landmarks})",
    )
    p.add_argument(
        "--landmark-weights",
        type=Path,
        default=None,
        help="local weights for the landmarker (face_alignment: 2DFAN4 file/folder; mesh: "
        "a folder with face_mesh.onnx and mesh68_map.npz)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default=_CONFIG.engine,
        help="inference engine (default auto: onnxruntime on CPU; on CUDA tensorrt, "
        "else onnxruntime, else torch)",
    )
    p.add_argument("--device", default=_CONFIG.device, help="cpu, cuda or cuda:N")
    p.add_argument(
        "--blur-kernel",
        type=int,
        default=_METHODS.blur_kernel,
        help=f"Gaussian kernel on the aligned 128 px face (default: {_METHODS.blur_kernel}; "
        "the paper's weak baselines: 9, 17)",
    )
    p.add_argument(
        "--pixelate-cells",
        type=int,
        default=_METHODS.pixelate_cells,
        help=f"cells across the region (default: {_METHODS.pixelate_cells}; "
        "the paper's baselines: 8, 16)",
    )


def pipeline_config(args: argparse.Namespace) -> AnonymizerConfig:
    """The ``AnonymizerConfig`` the options describe (not yet validated)."""
    return AnonymizerConfig(
        method=getattr(args, "method", _CONFIG.method),
        region=getattr(args, "region", _CONFIG.region),
        fallback_method=args.fallback,
        detector=args.detector,
        detector_settings=DetectorSettings(
            score_threshold=args.threshold,
            min_face_size=args.min_face,
            precision=args.detector_precision,
            max_input_side=args.max_input_side,
        ),
        landmarks=args.landmarks,
        landmark_weights=str(args.landmark_weights) if args.landmark_weights else None,
        model=str(args.model) if args.model else None,
        engine=args.engine,
        device=args.device,
        identity=IdentityConfig.from_spec(args.identity, args.seed),
        methods=MethodSettings(blur_kernel=args.blur_kernel, pixelate_cells=args.pixelate_cells),
    )
