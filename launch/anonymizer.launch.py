"""One camera: `ros2 launch ciagan_ros anonymizer.launch.py input_topic:=camera/image_raw`."""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


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
    ]
    node = Node(
        package="ciagan_ros",
        executable="anonymizer_node",
        name="anonymizer",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "input_topics": [LaunchConfiguration("input_topic")],
                "input_transport": LaunchConfiguration("transport"),
                "model_path": LaunchConfiguration("model_path"),
                "engine": LaunchConfiguration("engine"),
                "device": LaunchConfiguration("device"),
            },
        ],
    )
    return LaunchDescription([*args, node])
