"""ROS-free core of ciagan_ros: CIAGAN networks, alignment, detection, engines and tools."""

__version__ = "0.1.0"
