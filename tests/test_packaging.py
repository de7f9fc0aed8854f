"""The package is a valid ament_python ROS 2 package and a plain pip package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def manifest():
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    return catkin_pkg.parse_package(str(ROOT / "package.xml"))


@pytest.fixture(scope="module")
def distribution():
    from distutils.core import run_setup  # setuptools' shim; reads setup.py without building

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return run_setup("setup.py", stop_after="init")
    finally:
        os.chdir(cwd)


def test_package_xml_is_format_3_ament_python(manifest):
    manifest.validate()
    assert manifest.package_format == 3
    assert manifest.name == "ciagan_ros"
    assert manifest.get_build_type() == "ament_python"


def test_package_xml_declares_the_node_and_tool_dependencies(manifest):
    run_deps = {d.name for d in manifest.exec_depends}
    for name in (
        "rclpy",
        "sensor_msgs",
        "launch_ros",
        "diagnostic_msgs",
        "lifecycle_msgs",
        "vision_msgs",
        "python3-numpy",
        "python3-opencv",
    ):
        assert name in run_deps, name
    test_deps = {d.name for d in manifest.test_depends}
    assert {"ament_flake8", "ament_pep257", "ament_copyright", "python3-pytest"} <= test_deps


def test_setup_and_package_xml_agree_on_name_and_version(manifest, distribution):
    assert distribution.get_name() == manifest.name
    assert distribution.get_version() == manifest.version


def test_data_files_install_the_ament_layout(distribution):
    files = {dest: list(srcs) for dest, srcs in distribution.data_files}
    assert files["share/ament_index/resource_index/packages"] == ["resource/ciagan_ros"]
    assert files["share/ciagan_ros"] == ["package.xml"]
    assert "share/ciagan_ros/launch" in files and "share/ciagan_ros/config" in files
    assert files["share/ciagan_ros/config"], "config/*.yaml should be installed"
    for srcs in files.values():
        for src in srcs:
            assert (ROOT / src).is_file(), src


def test_both_python_packages_and_the_ciagan_script_are_installed(distribution):
    assert {"ciagan_core", "ciagan_ros"} <= set(distribution.packages)
    assert "ciagan = ciagan_core.cli:main" in distribution.entry_points["console_scripts"]


def test_package_data_ships_the_detector_calibration_image(distribution):
    from ciagan_core.detection.quantized import CALIBRATION_IMAGE

    patterns = distribution.package_data["ciagan_core"]
    relative = CALIBRATION_IMAGE.relative_to(ROOT / "ciagan_core")
    assert any(relative.match(pattern) for pattern in patterns)
    assert CALIBRATION_IMAGE.is_file()


def test_package_data_ships_the_face_mesh_model_its_map_and_licence(distribution):
    from ciagan_core.landmarks.mesh import MODEL_DIR

    patterns = distribution.package_data["ciagan_core"]
    for name in ("face_mesh.onnx", "mesh68_map.npz", "face_mesh.json", "LICENSE", "NOTICE"):
        path = MODEL_DIR / name
        assert path.is_file(), name
        assert any(path.relative_to(ROOT / "ciagan_core").match(p) for p in patterns), name
    assert "Apache License" in (MODEL_DIR / "LICENSE").read_text()


def test_dependencies_are_ranges_not_pins(distribution):
    requirements = list(distribution.install_requires)
    for extra in distribution.extras_require.values():
        requirements += list(extra)
    assert not [r for r in requirements if "==" in r]
    torch_req = [r for r in distribution.install_requires if r.startswith("torch")]
    assert torch_req and ">=" in torch_req[0] and "<" in torch_req[0]


def test_setup_cfg_puts_ros_executables_under_lib():
    text = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/ciagan_ros" in text
    assert "install_scripts=$base/lib/ciagan_ros" in text


def test_core_library_imports_without_ros():
    code = (
        "import sys, ciagan_core.model_file, ciagan_core.cli;"
        "bad = [m for m in ('rclpy', 'sensor_msgs', 'rosbags') if m in sys.modules];"
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_ciagan_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "ciagan_core", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0
    assert "model" in result.stdout
