"""Several cameras, one node and one engine:
`ros2 launch ciagan_ros multi_camera.launch.py cameras:=front/image_raw,rear/image_raw`."""

import os
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def _actions(context: LaunchContext) -> list:
    cameras = [c.strip() for c in LaunchConfiguration("cameras").perform(context).split(",")]
    # A per-camera identity file names its cameras, so it is read only when given: the
    # example (config/identities.yaml) names front/image_raw and rear/image_raw, and a node
    # given other cameras would refuse it.
    identities = LaunchConfiguration("identities_file").perform(context)
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
                *([identities] if identities else []),
                {
                    "input_topics": [c for c in cameras if c],
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
    return LaunchDescription(
        [
            DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
            DeclareLaunchArgument(
                "cameras",
                default_value="front/image_raw,rear/image_raw",
                description="comma-separated camera image topics, all served by one engine",
            ),
            DeclareLaunchArgument(
                "transport", default_value="raw", description="raw or compressed input"
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=str(share / "config" / "anonymizer.yaml"),
                description="parameters file",
            ),
            DeclareLaunchArgument(
                "identities_file",
                default_value="",
                description="identity policies per camera, naming these cameras (for method "
                "ciagan; example: config/identities.yaml); none by default",
            ),
            DeclareLaunchArgument(
                "model_path", default_value="", description="generator model file"
            ),
            DeclareLaunchArgument("engine", default_value="auto", description="engine"),
            DeclareLaunchArgument("device", default_value="cpu", description="device"),
            DeclareLaunchArgument(
                "fastdds_profile",
                default_value=str(share / "config" / "fastdds.xml"),
                description=f"Fast DDS profile, used when {PROFILE_ENV} is not set",
            ),
            OpaqueFunction(function=_actions),
        ]
    )
