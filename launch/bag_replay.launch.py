"""Play a bag, anonymize it live, record only the anonymized topics:
`ros2 launch ciagan_ros bag_replay.launch.py bag:=IN output:=OUT input_topic:=camera/image`.
(For offline work without ROS, `ciagan bag` is faster and sees the whole recording.)"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("ciagan_ros"))
    topic = LaunchConfiguration("input_topic")
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
            Node(
                package="ciagan_ros",
                executable="anonymizer_node",
                name="anonymizer",
                output="screen",
                # Every frame matters when replaying: reliable, deep queue.
                parameters=[
                    LaunchConfiguration("params_file"),
                    {
                        "input_topics": [topic],
                        "model_path": LaunchConfiguration("model_path"),
                        "qos_reliability": "reliable",
                        "qos_depth": 100,
                    },
                ],
            ),
            ExecuteProcess(
                cmd=[
                    "ros2",
                    "bag",
                    "record",
                    "-o",
                    LaunchConfiguration("output"),
                    PythonExpression(["'/", topic, "_anonymized'"]),
                ],
                output="screen",
            ),
            ExecuteProcess(
                cmd=["ros2", "bag", "play", LaunchConfiguration("bag")], output="screen"
            ),
        ]
    )
