"""One camera: `ros2 launch ciagan_ros anonymizer.launch.py input_topic:=camera/image_raw`."""

import os
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def _actions(context: LaunchContext) -> list:
    # Resolved here, so that input_topics is a real list of strings: launch would join a list
    # of substitutions into one string, which the node refuses for a string array.
    topic = LaunchConfiguration("input_topic").perform(context)
    actions = []
    if not os.environ.get(PROFILE_ENV):  # camera-sized Fast DDS buffers (config/fastdds.xml)
        profile = LaunchConfiguration("fastdds_profile").perform(context)
        actions.append(SetEnvironmentVariable(PROFILE_ENV, profile))
    actions.append(
        Node(
            package="ciagan_ros",
            executable="anonymizer_node",
            name="anonymizer",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            parameters=[
                LaunchConfiguration("params_file"),
                {
                    "input_topics": [topic],
                    "input_transport": LaunchConfiguration("transport"),
                    "model_path": LaunchConfiguration("model_path"),
                    "engine": LaunchConfiguration("engine"),
                    "device": LaunchConfiguration("device"),
                },
            ],
        )
    )
    return actions


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("ciagan_ros"))
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument(
            "input_topic", default_value="image", description="camera image topic (relative)"
        ),
        DeclareLaunchArgument(
            "transport", default_value="raw", description="raw or compressed input"
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=str(share / "config" / "anonymizer.yaml"),
            description="parameters file (config/anonymizer.yaml lists every parameter)",
        ),
        DeclareLaunchArgument(
            "model_path", default_value="", description="generator model file (method ciagan)"
        ),
        DeclareLaunchArgument(
            "engine", default_value="auto", description="auto, onnxruntime, torch, tensorrt"
        ),
        DeclareLaunchArgument("device", default_value="cpu", description="cpu, cuda or cuda:N"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=str(share / "config" / "fastdds.xml"),
            description=f"Fast DDS profile, used when {PROFILE_ENV} is not set",
        ),
    ]
    return LaunchDescription([*args, OpaqueFunction(function=_actions)])
