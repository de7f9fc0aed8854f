"""ROS 2 side of ciagan_ros: message conversion, the anonymizer node and the bag tool.

Modules here that do not start with ``node`` import no ROS packages, so the bag tool and the
message conversion also work (and are tested) on machines without ROS 2.
"""
