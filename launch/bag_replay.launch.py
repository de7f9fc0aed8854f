"""Play a bag, anonymize it live, record only the anonymized topics:
`ros2 launch ciagan_ros bag_replay.launch.py bag:=IN output:=OUT input_topic:=camera/image`.
(For offline work without ROS, `ciagan bag` is faster and sees the whole recording.)"""

import os
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    OpaqueFunction,
    SetEnvironmentVariable,
)
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def _actions(context: LaunchContext) -> list:
    topic = LaunchConfiguration("input_topic").perform(context)
    output_topic = "/" + f"{topic}_anonymized".lstrip("/")
    actions = []
    if not os.environ.get(PROFILE_ENV):  # player, node and recorder: camera-sized buffers
        profile = LaunchConfiguration("fastdds_profile").perform(context)
        actions.append(SetEnvironmentVariable(PROFILE_ENV, profile))
    actions += [
        Node(
            package="ciagan_ros",
            executable="anonymizer_node",
            name="anonymizer",
            output="screen",
            # Every frame matters when replaying: reliable in and out, a deep queue.
            parameters=[
                LaunchConfiguration("params_file"),
                {
                    "input_topics": [topic],
                    "model_path": LaunchConfiguration("model_path"),
                    "input_qos_reliability": "reliable",
                    "output_qos_reliability": "reliable",
                    "qos_depth": 100,
                },
            ],
        ),
        ExecuteProcess(
            cmd=["ros2", "bag", "record", "-o", LaunchConfiguration("output"), output_topic],
            output="screen",
        ),
        # Played once the node has had time to build its pipeline (frames published before it
        # subscribes are not recorded: missing from the output, never raw).
        ExecuteProcess(
            cmd=[
                "ros2",
                "bag",
                "play",
                LaunchConfiguration("bag"),
                "--delay",
                LaunchConfiguration("play_delay"),
            ],
            output="screen",
        ),
    ]
    return actions


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("ciagan_ros"))
    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", description="the rosbag2 folder to play"),
            DeclareLaunchArgument("output", description="the rosbag2 folder to record"),
            DeclareLaunchArgument("input_topic", default_value="image", description="image topic"),
            DeclareLaunchArgument(
                "params_file",
                default_value=str(share / "config" / "anonymizer.yaml"),
                description="parameters file",
            ),
            DeclareLaunchArgument("model_path", default_value="", description="model file"),
            DeclareLaunchArgument(
                "play_delay",
                default_value="15",
                description="seconds before playing: the node builds its pipeline meanwhile",
            ),
            DeclareLaunchArgument(
                "fastdds_profile",
                default_value=str(share / "config" / "fastdds.xml"),
                description=f"Fast DDS profile, used when {PROFILE_ENV} is not set",
            ),
            OpaqueFunction(function=_actions),
        ]
    )
