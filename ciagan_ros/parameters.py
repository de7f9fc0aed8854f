"""The node's parameters, declared once: name, type, default, range or choices, description.

The node declares them from this table (with descriptors), the launch files and
``config/anonymizer.yaml`` list them, the tests check all of these agree, and
``anonymizer_config`` maps them onto the core's ``AnonymizerConfig`` with the same validation
the CLI uses. No ROS import here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ciagan_core.detection import DETECTORS, DetectorSettings, check_detector_settings
from ciagan_core.detection.base import PRECISIONS
from ciagan_core.engines import ENGINES
from ciagan_core.errors import ConfigError
from ciagan_core.identity import POLICIES, IdentityConfig, identity_from_parameters, read_yaml
from ciagan_core.landmarks import LANDMARKERS
from ciagan_core.methods import METHODS, REGIONS, MethodSettings
from ciagan_core.pipeline import AnonymizerConfig

_CONFIG = AnonymizerConfig()
_METHODS = MethodSettings()
_DETECTION = DetectorSettings()


@dataclass(frozen=True)
class Param:
    """One node parameter."""

    name: str
    default: bool | int | float | str | list
    description: str
    choices: tuple[str, ...] = ()
    #: Inclusive (low, high) for numbers.
    bounds: tuple[float, float] | None = None
    #: Element type of a list parameter ("string" or "integer").
    item: str = ""

    @property
    def kind(self) -> str:
        """ROS parameter type: bool, integer, double, string, string_array, integer_array."""
        if isinstance(self.default, list):
            return f"{self.item}_array"
        return {bool: "bool", int: "integer", float: "double", str: "string"}[type(self.default)]

    def check(self, value: Any) -> None:
        """ConfigError if ``value`` has the wrong type or is out of range."""
        kind = self.kind
        ok = {
            "bool": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "double": isinstance(value, int | float) and not isinstance(value, bool),
            "string": isinstance(value, str),
            "string_array": isinstance(value, list | tuple)
            and all(isinstance(v, str) for v in value),
            "integer_array": isinstance(value, list | tuple)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
        }[kind]
        if not ok:
            raise ConfigError(f"parameter {self.name} must be of type {kind}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ConfigError(
                f"parameter {self.name} must be one of {', '.join(self.choices)}, got {value!r}"
            )
        if self.bounds and not self.bounds[0] <= value <= self.bounds[1]:
            low, high = self.bounds
            raise ConfigError(f"parameter {self.name} must be in {low:g}..{high:g}, got {value}")


PARAMETERS: tuple[Param, ...] = (
    # -- topics and transport --
    Param(
        "input_topics",
        ["image"],
        "input image topics (relative names, one per camera); "
        "outputs are published beside each: <topic>_anonymized",
        item="string",
    ),
    Param(
        "input_transport",
        "raw",
        "raw (sensor_msgs/Image on <topic>) or compressed "
        "(sensor_msgs/CompressedImage on <topic>/compressed)",
        choices=("raw", "compressed"),
    ),
    Param("publish_compressed", False, "also publish <topic>_anonymized/compressed"),
    Param("jpeg_quality", 90, "JPEG quality of compressed outputs", bounds=(1, 100)),
    Param("publish_faces", False, "publish <topic>_faces (vision_msgs/Detection2DArray)"),
    Param("pass_camera_info", False, "republish <camera>/camera_info beside the outputs"),
    Param(
        "input_qos_reliability",
        "best_effort",
        "reliability of the image subscriptions (best_effort matches every camera publisher)",
        choices=("best_effort", "reliable"),
    ),
    Param(
        "output_qos_reliability",
        "reliable",
        "reliability of the anonymized outputs (reliable matches every subscriber and "
        "resends lost fragments of large frames)",
        choices=("best_effort", "reliable"),
    ),
    Param("qos_depth", 5, "history depth of subscriptions and publishers", bounds=(1, 1000)),
    Param(
        "diagnostics_period",
        1.0,
        "seconds between /diagnostics messages (one status per camera)",
        bounds=(0.05, 60.0),
    ),
    # -- fail closed --
    Param(
        "on_failure",
        "pixelate",
        "when a frame cannot be anonymized (pipeline error, no "
        "engine yet, too late): publish it fully pixelated, or drop it",
        choices=("pixelate", "drop"),
    ),
    Param(
        "max_latency_ms",
        500.0,
        "a frame older than this when its result is ready is "
        "published fully pixelated (or dropped)",
        bounds=(1.0, 60000.0),
    ),
    Param("autostart", True, "configure and activate the lifecycle node on start"),
    # -- the pipeline (AnonymizerConfig) --
    Param(
        "method",
        _CONFIG.method,
        "anonymization method (ciagan needs model_path)",
        choices=METHODS,
    ),
    Param(
        "region",
        _CONFIG.region,
        "where blur/pixelate/solid go: the grown detection box or the 68-landmark mask",
        choices=REGIONS,
    ),
    Param(
        "fallback_method",
        _CONFIG.fallback_method,
        "method for faces without reliable landmarks",
        choices=tuple(m for m in METHODS if m != "ciagan"),
    ),
    Param(
        "blur_kernel",
        _METHODS.blur_kernel,
        "blur strength: Gaussian kernel on the aligned "
        "128 px face (odd; the paper's weak baselines are 9 and 17)",
        bounds=(3, 255),
    ),
    Param(
        "pixelate_cells",
        _METHODS.pixelate_cells,
        "pixelate: cells across the region",
        bounds=(2, 64),
    ),
    Param("identity_policy", "per_track", "which identity generated faces get", choices=POLICIES),
    Param("identity", 0, "the identity of policy 'fixed'", bounds=(0, 1_000_000)),
    Param(
        "identity_pool",
        "",
        "identities to draw from, comma-separated, e.g. '3,17,42' (empty: all)",
    ),
    Param("identity_seed", 0, "seed of identity draws", bounds=(0, 2**31 - 1)),
    Param(
        "camera_identities",
        "",
        "per-camera identity policies that override the above, "
        "'TOPIC=SPEC; TOPIC=SPEC' with SPEC per_track, random, fixed:ID or pool:ID,ID "
        "(config/identities.yaml)",
    ),
    Param(
        "detector",
        _CONFIG.detector,
        "face detector",
        choices=tuple(sorted(DETECTORS)),
    ),
    Param(
        "detector_precision",
        _DETECTION.precision,
        "CenterFace precision",
        choices=PRECISIONS,
    ),
    Param(
        "threshold",
        -1.0,
        "detector score threshold in the backend's units (-1: the "
        "backend's recall-oriented default; centerface: in (0, 0.7], dlib: -1..0, higher "
        "misses faces; not for ensemble)",
        bounds=(-1.0, 1.0),
    ),
    Param(
        "min_face",
        _DETECTION.min_face_size,
        "smallest face side in pixels (larger would let identifiable faces through)",
        bounds=(0.0, 24.0),
    ),
    Param(
        "max_input_side",
        _DETECTION.max_input_side,
        "scale frames with a longer side down for detection (0: full resolution)",
        bounds=(0, 16384),
    ),
    Param(
        "landmarks",
        _CONFIG.landmarks,
        "68-point landmarker: dlib (non-commercial model), mesh (Apache-2.0, batched, GPU-ready)",
        choices=LANDMARKERS,
    ),
    Param(
        "landmark_weights",
        "",
        "local weights of the landmarker (face_alignment, mesh)",
    ),
    Param("engine", _CONFIG.engine, "inference engine", choices=ENGINES),
    Param("model_path", "", "generator model file (.safetensors)"),
    Param(
        "engine_cache_dir",
        "",
        "where TensorRT engines and the int8 detector are cached "
        "(empty: next to the model, and $CIAGAN_CACHE_DIR)",
    ),
    Param("device", _CONFIG.device, "cpu, cuda or cuda:N"),
    Param(
        "precision",
        _CONFIG.precision,
        "generator precision",
        choices=("fp32", "fp16"),
    ),
    Param(
        "max_batch",
        _CONFIG.max_batch,
        "faces per generator call, across cameras",
        bounds=(1, 64),
    ),
    Param(
        "hold_frames",
        5,
        "frames a face the detector lost stays covered on its last box",
        bounds=(0, 300),
    ),
)
BY_NAME = {p.name: p for p in PARAMETERS}
#: Parameters read when the node is configured (changing them needs cleanup, configure).
TOPIC_PARAMETERS = {
    "input_topics",
    "input_transport",
    "input_qos_reliability",
    "output_qos_reliability",
    "qos_depth",
    "publish_compressed",
    "publish_faces",
    "pass_camera_info",
}
#: Parameters read as they are used; a change of any other one rebuilds the pipeline.
READ_PER_FRAME = {"on_failure", "max_latency_ms", "diagnostics_period", "jpeg_quality"}


def when_applied(name: str) -> str:
    """When a change of parameter ``name`` at run time takes effect in the node."""
    if name in TOPIC_PARAMETERS:
        return "at configure"
    if name == "autostart":
        return "at start (read-only)"
    if name in READ_PER_FRAME:
        return "at once"
    return "rebuild"


def defaults() -> dict[str, Any]:
    """Every parameter at its default."""
    return {
        p.name: list(p.default) if isinstance(p.default, list) else p.default for p in PARAMETERS
    }


def check_values(values: Mapping[str, Any]) -> None:
    """ConfigError for an unknown parameter, a wrong type or an out-of-range value."""
    for name, value in values.items():
        if name not in BY_NAME:
            raise ConfigError(f"unknown parameter {name!r}")
        BY_NAME[name].check(value)


def camera_identities(values: Mapping[str, Any]) -> dict[str, IdentityConfig]:
    """The ``camera_identities`` overrides, by camera topic."""
    v = {**defaults(), **values}
    found = {}
    for item in filter(None, (part.strip() for part in v["camera_identities"].split(";"))):
        topic, eq, spec = item.partition("=")
        if not eq or not topic.strip() or spec.strip().endswith((".yaml", ".yml")):
            raise ConfigError(f"camera_identities entries are TOPIC=SPEC, got {item!r}")
        found[topic.strip()] = IdentityConfig.from_spec(spec, int(v["identity_seed"]))
    unknown = set(found) - set(v["input_topics"])
    if unknown:
        raise ConfigError(f"camera_identities names topics not in input_topics: {sorted(unknown)}")
    return found


def anonymizer_configs(values: Mapping[str, Any]) -> dict[str, AnonymizerConfig]:
    """One validated ``AnonymizerConfig`` per camera (they differ only in identity policy)."""
    config = anonymizer_config(values)
    cameras = list({**defaults(), **values}["input_topics"])
    if not cameras or len(set(cameras)) != len(cameras) or not all(c.strip() for c in cameras):
        raise ConfigError(f"input_topics must list distinct, non-empty topics, got {cameras}")
    overrides = camera_identities(values)
    configs = {}
    for camera in {**defaults(), **values}["input_topics"]:
        configs[camera] = replace(config, identity=overrides.get(camera, config.identity))
        configs[camera].validate()
    return configs


def anonymizer_config(values: Mapping[str, Any]) -> AnonymizerConfig:
    """The ``AnonymizerConfig`` of a full or partial parameter set, validated like the CLI's
    (no model is loaded here; a missing model file is reported when the pipeline is built)."""
    check_values(values)
    v = {**defaults(), **values}
    config = AnonymizerConfig(
        method=v["method"],
        region=v["region"],
        fallback_method=v["fallback_method"],
        detector=v["detector"],
        detector_settings=DetectorSettings(
            # -1 means the backend's default; dlib's other negative margins are its own values
            score_threshold=None if v["threshold"] == -1 else float(v["threshold"]),
            min_face_size=float(v["min_face"]),
            max_input_side=int(v["max_input_side"]),
            precision=v["detector_precision"],
            cache_dir=v["engine_cache_dir"] or None,
        ),
        landmarks=v["landmarks"],
        landmark_weights=v["landmark_weights"] or None,
        model=v["model_path"] or None,
        engine=v["engine"],
        device=v["device"],
        precision=v["precision"],
        max_batch=int(v["max_batch"]),
        identity=identity_from_parameters(v),
        methods=MethodSettings(blur_kernel=v["blur_kernel"], pixelate_cells=v["pixelate_cells"]),
        hold_frames=int(v["hold_frames"]),
    )
    config.validate()
    check_detector_settings(config.detector, config.detector_settings)
    return config


def load_parameters_yaml(path: str | Path, node: str = "anonymizer") -> dict[str, Any]:
    """The ``ros__parameters`` that apply to ``node`` in a ROS 2 parameters file: those of
    ``/**``, then those of ``node`` or ``/node`` over them (as rcl merges them)."""
    data = read_yaml(path, "node parameters")
    found: dict[str, Any] | None = None
    for key in ("/**", node, f"/{node}"):
        section = data.get(key) if isinstance(data, dict) else None
        if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            found = {**(found or {}), **section["ros__parameters"]}
    if found is None:
        raise ConfigError(f"{path}: no '/**: ros__parameters:' or '{node}:' section")
    return found


def render_parameters_yaml() -> str:
    """``config/anonymizer.yaml``: every parameter at its default, with its description.

    Keyed ``/**``, so the file applies under any node name and namespace (a file keyed
    ``anonymizer:`` is read by rcl as ``/anonymizer`` only, and silently ignored under
    ``namespace:=cam1``)."""
    import json

    lines = [
        "# Parameters of the ciagan_ros anonymizer node, at their defaults.",
        "# Generated from ciagan_ros/parameters.py (tests check the two agree).",
        "# '/**' applies them to the node under any name and namespace.",
        "/**:",
        "  ros__parameters:",
    ]
    for param in PARAMETERS:
        note = param.description
        if param.choices:
            note += f" [{' | '.join(param.choices)}]"
        if param.bounds:
            note += f" [{param.bounds[0]:g}..{param.bounds[1]:g}]"
        note += {
            "at configure": " (read at configure: change it while unconfigured)",
            "rebuild": " (changing it rebuilds the pipeline)",
        }.get(when_applied(param.name), "")
        lines.append(f"    # {note}")
        lines.append(f"    {param.name}: {json.dumps(param.default)}")
    return "\n".join(lines) + "\n"


#: docs/node.md holds the parameter table between these two lines.
TABLE_BEGIN = "<!-- parameters: generated by python -m ciagan_ros.parameters; do not edit -->"
TABLE_END = "<!-- parameters: end -->"


def render_parameters_markdown() -> str:
    """docs/node.md's parameter table: name, type, default, allowed values, description, and
    whether a change at run time rebuilds the pipeline."""
    import json

    lines = [
        "| parameter | type | default | allowed | a change applies | description |",
        "|---|---|---|---|---|---|",
    ]
    for param in PARAMETERS:
        allowed = ""
        if param.choices:
            allowed = ", ".join(f"`{c}`" for c in param.choices)
        elif param.bounds:
            allowed = f"{param.bounds[0]:g} .. {param.bounds[1]:g}"
        description = param.description.replace("|", "\\|").replace("<", "&lt;")
        lines.append(
            f"| `{param.name}` | {param.kind} | `{json.dumps(param.default)}` | {allowed} | "
            f"{when_applied(param.name)} | {description} |"
        )
    return "\n".join(lines) + "\n"


def _with_table(page: str) -> str:
    """``page`` with the text between TABLE_BEGIN and TABLE_END replaced by the table."""
    start, end = page.index(TABLE_BEGIN) + len(TABLE_BEGIN), page.index(TABLE_END)
    return page[:start] + "\n" + render_parameters_markdown() + page[end:]


def main(argv: list[str] | None = None) -> int:
    """``python -m ciagan_ros.parameters [--check]``: write config/anonymizer.yaml and the
    table in docs/node.md from the table above (``--check``: exit 1 if either is stale)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    outputs = {
        args.root / "config" / "anonymizer.yaml": render_parameters_yaml(),
        args.root / "docs" / "node.md": _with_table((args.root / "docs" / "node.md").read_text()),
    }
    stale = [path for path, text in outputs.items() if path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path} is stale: run python -m ciagan_ros.parameters")
        return 1 if stale else 0
    for path in stale:
        path.write_text(outputs[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
