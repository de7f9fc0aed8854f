"""Several cameras, one node and one engine:
`ros2 launch ciagan_ros multi_camera.launch.py cameras:=front/image_raw,rear/image_raw`."""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _node(context: LaunchContext) -> list[Node]:
    cameras = [c.strip() for c in context.launch_configurations["cameras"].split(",") if c.strip()]
    return [
        Node(
            package="ciagan_ros",
            executable="anonymizer_node",
            name="anonymizer",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            parameters=[
                LaunchConfiguration("params_file"),
                LaunchConfiguration("identities_file"),
                {
                    "input_topics": cameras,
                    "input_transport": LaunchConfiguration("transport"),
                    "model_path": LaunchConfiguration("model_path"),
                    "engine": LaunchConfiguration("engine"),
                    "device": LaunchConfiguration("device"),
                },
            ],
        )
    ]


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
                default_value=str(share / "config" / "identities.yaml"),
                description="identity policies per camera (config/identities.yaml)",
            ),
            DeclareLaunchArgument(
                "model_path", default_value="", description="generator model file"
            ),
            DeclareLaunchArgument("engine", default_value="auto", description="engine"),
            DeclareLaunchArgument("device", default_value="cpu", description="device"),
            OpaqueFunction(function=_node),
        ]
    )
