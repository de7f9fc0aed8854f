"""The node's parameter table, its YAML file, the launch files and package.xml agree."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import yaml

from ciagan_core.errors import ConfigError
from ciagan_ros.parameters import (
    BY_NAME,
    PARAMETERS,
    anonymizer_config,
    camera_identities,
    check_values,
    defaults,
    load_parameters_yaml,
    render_parameters_yaml,
)

ROOT = Path(__file__).resolve().parents[1]
#: Launch arguments that set a node parameter, and which one.
LAUNCH_TO_PARAMETER = {
    "input_topic": "input_topics",
    "cameras": "input_topics",
    "transport": "input_transport",
    "model_path": "model_path",
    "engine": "engine",
    "device": "device",
}
#: Launch arguments that set no parameter.
LAUNCH_ONLY = {
    "namespace",
    "params_file",
    "identities_file",
    "bag",
    "output",
    "play_delay",
    "fastdds_profile",
}


def test_the_parameters_file_is_the_table_at_its_defaults():
    path = ROOT / "config" / "anonymizer.yaml"
    assert path.read_text() == render_parameters_yaml()
    values = load_parameters_yaml(path)
    assert values == defaults()
    anonymizer_config(values)  # valid as it is


def test_the_defaults_are_the_cores_defaults():
    from ciagan_core.pipeline import AnonymizerConfig

    config = anonymizer_config(defaults())
    core = AnonymizerConfig()
    assert config.method == core.method and config.region == core.region
    assert config.methods == core.methods and config.detector == core.detector
    assert config.detector_settings.precision == core.detector_settings.precision


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("method", "sharpen", "must be one of"),
        ("blur_kernel", 4, "odd number"),
        ("jpeg_quality", 0, "must be in 1..100"),
        ("qos_depth", "5", "must be of type integer"),
        ("input_topics", "image", "must be of type string_array"),
        ("method", "ciagan", "needs a generator model file"),
        ("identity_pool", "1,x", "comma-separated integers"),
        ("identity_policy", "pool", "non-empty pool"),
        ("hold_frames", 301, "must be in 0..300"),
        ("no_such_parameter", 1, "unknown parameter"),
        # Values that would make detection miss faces: refused at start (exit 2), not at build.
        ("threshold", 0.9, r"threshold must be in \(0, 0.7\]"),
        ("threshold", 0.0, r"threshold must be in \(0, 0.7\]"),
        ("min_face", 30.0, r"must be in 0..24"),
        ("threshold", -0.5, r"threshold must be in \(0, 0.7\]"),  # centerface: no margins
    ],
)
def test_an_invalid_value_is_rejected_with_its_reason(tmp_path, name, value, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"anonymizer": {"ros__parameters": {name: value}}}))
    values = load_parameters_yaml(path)
    with pytest.raises(ConfigError, match=message):
        anonymizer_config(values)  # the node's set-parameters callback runs the same


def test_every_parameter_has_a_type_and_a_description():
    kinds = {"bool", "integer", "double", "string", "string_array", "integer_array"}
    for param in PARAMETERS:
        assert param.kind in kinds and len(param.description) > 10, param.name
        param.check(param.default)
        if param.bounds:
            assert param.kind in ("integer", "double")
    check_values(defaults())


def _launch_arguments(path: Path) -> dict[str, str | None]:
    """DeclareLaunchArgument names and literal defaults, read without importing launch."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            name = node.args[0].value
            default = next((k.value for k in node.keywords if k.arg == "default_value"), None)
            found[name] = default.value if isinstance(default, ast.Constant) else None
    return found


@pytest.mark.parametrize(
    "launch_file", ["anonymizer.launch.py", "multi_camera.launch.py", "bag_replay.launch.py"]
)
def test_launch_arguments_map_onto_the_table_with_its_defaults(launch_file):
    arguments = _launch_arguments(ROOT / "launch" / launch_file)
    assert arguments
    for name, default in arguments.items():
        assert name in LAUNCH_TO_PARAMETER or name in LAUNCH_ONLY, f"{launch_file}: {name}"
        parameter = LAUNCH_TO_PARAMETER.get(name)
        if parameter and default is not None and name != "cameras":
            table = BY_NAME[parameter].default
            assert default == (table[0] if isinstance(table, list) else table), name


def test_package_xml_lists_every_ros_package_the_node_and_launch_files_import():
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    manifest = catkin_pkg.parse_package(str(ROOT / "package.xml"))
    declared = {d.name for d in manifest.exec_depends}
    imported = set()
    for path in [ROOT / "ciagan_ros" / "node.py", *sorted((ROOT / "launch").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
    ours = {"ciagan_core", "ciagan_ros", *sys.stdlib_module_names}
    assert imported - ours - {"launch", "launch_ros"} <= declared, imported - declared
    assert {"launch", "launch_ros"} <= declared


def test_the_identities_file_gives_each_camera_its_policy():
    from ciagan_ros.parameters import anonymizer_configs

    values = load_parameters_yaml(ROOT / "config" / "identities.yaml")
    values["input_topics"] = ["front/image_raw", "rear/image_raw", "left/image_raw"]
    configs = anonymizer_configs(values)
    assert configs["front/image_raw"].identity.policy == "fixed"
    assert configs["front/image_raw"].identity.identity == 7
    assert configs["rear/image_raw"].identity.pool == (100, 200, 300)
    assert configs["left/image_raw"].identity.policy == "per_track"


def test_the_cli_reads_the_same_identities_file():
    from ciagan_core.identity import IdentityConfig

    config = IdentityConfig.from_spec(str(ROOT / "config" / "identities.yaml"))
    assert config.policy == "per_track" and config.seed == 0


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("front/image_raw:fixed:7", "TOPIC=SPEC"),
        ("side/image=fixed:7", "not in input_topics"),
        ("front/image_raw=pool:", "non-empty pool"),
        ("front/image_raw=fixed:x", "identities are integers"),
    ],
)
def test_bad_camera_identities_are_rejected(entries, message):
    from ciagan_ros.parameters import anonymizer_configs

    values = {"input_topics": ["front/image_raw"], "camera_identities": entries}
    with pytest.raises(ConfigError, match=message):
        anonymizer_configs(values)


@pytest.mark.parametrize(
    "launch_file", ["anonymizer.launch.py", "multi_camera.launch.py", "bag_replay.launch.py"]
)
def test_launch_files_pass_lists_of_strings_and_the_dds_profile(launch_file):
    """launch joins a list of substitutions into one string, which the node refuses for a
    string array: parameter lists must be built from resolved values."""
    tree = ast.parse((ROOT / "launch" / launch_file).read_text())
    # Names bound to a substitution (x = LaunchConfiguration(...)), not to a resolved value
    # (x = LaunchConfiguration(...).perform(context)).
    substitutions = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for value in node.values:
                for item in ast.walk(value):
                    if isinstance(item, ast.List):
                        bad = [
                            e
                            for e in item.elts
                            if isinstance(e, ast.Call)
                            or (isinstance(e, ast.Name) and e.id in substitutions)
                        ]
                        assert not bad, f"{launch_file}:{item.lineno}: list of substitutions"
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert "SetEnvironmentVariable" in names  # config/fastdds.xml unless the user set one
    assert "fastdds.xml" in (ROOT / "launch" / launch_file).read_text()


def test_multi_camera_reads_an_identities_file_only_when_given():
    """The example identities file names front/image_raw and rear/image_raw; loaded by default,
    it made the node refuse any other cameras (camera_identities names topics not in
    input_topics: exit 2)."""
    path = ROOT / "launch" / "multi_camera.launch.py"
    assert _launch_arguments(path)["identities_file"] == ""
    values = {
        **load_parameters_yaml(ROOT / "config" / "anonymizer.yaml"),
        "input_topics": ["left/image_raw"],
    }
    anonymizer_config(values)  # what the launch file passes for other cameras: valid
    with pytest.raises(ConfigError, match="not in input_topics"):
        camera_identities({**values, **load_parameters_yaml(ROOT / "config" / "identities.yaml")})


def test_dlib_margins_reach_the_node_and_minus_one_is_the_default():
    """-1 is the backend's default; any other value is the backend's own (dlib: -1..0)."""
    values = {**defaults(), "detector": "dlib"}
    assert (
        anonymizer_config({**values, "threshold": -1.0}).detector_settings.score_threshold is None
    )
    assert (
        anonymizer_config({**values, "threshold": -0.5}).detector_settings.score_threshold == -0.5
    )
    with pytest.raises(ConfigError, match=r"margin in -1\.\.0"):
        anonymizer_config({**values, "threshold": 0.9})
