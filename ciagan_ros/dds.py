"""Fast DDS settings that deliver camera frames, without ROS imports.

With Fast DDS's defaults (a 512 KiB shared-memory segment, small UDP socket buffers) a
best-effort topic delivers almost no frame larger than about 300x300 between two processes. The
profile shipped in ``config/fastdds.xml`` gives the shared-memory transport a 64 MiB segment and
UDP 8 MiB socket buffers. What matters is the *sending* process's profile: the camera driver's
for the frames the node receives, the node's for the frames it publishes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
PROFILE_NAME = "fastdds.xml"
#: The RMW implementations that read Fast DDS profiles.
FASTDDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def shipped_profile() -> Path | None:
    """``config/fastdds.xml`` where this installation has it: the package's share folder
    (colcon, or a pip install's data files), else the source checkout (editable install)."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("ciagan_ros")) / "config")
    except Exception:  # no ament index, or the package is not in it
        pass
    candidates += [
        Path(sys.prefix) / "share" / "ciagan_ros" / "config",
        Path(__file__).resolve().parents[1] / "config",
    ]
    return next((c / PROFILE_NAME for c in candidates if (c / PROFILE_NAME).is_file()), None)


def use_shipped_profile(environ: MutableMapping[str, str] = os.environ) -> str:
    """Point Fast DDS at the shipped profile for this process, unless the user chose a profile
    (``FASTDDS_DEFAULT_PROFILES_FILE``, or ``DEFAULT_FASTDDS_PROFILES.xml`` in the working
    folder) or another middleware. Call it before ``rclpy.init``. Returns what was done, for the
    log."""
    if environ.get(PROFILE_ENV):
        return f"Fast DDS profile: {environ[PROFILE_ENV]} ({PROFILE_ENV})"
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if rmw and rmw not in FASTDDS_RMWS:
        return f"middleware {rmw}: no Fast DDS profile applied"
    if Path("DEFAULT_FASTDDS_PROFILES.xml").is_file():
        return "Fast DDS profile: DEFAULT_FASTDDS_PROFILES.xml in the working folder"
    profile = shipped_profile()
    if profile is None:
        return "Fast DDS profile: none found, Fast DDS defaults (large frames may not arrive)"
    environ[PROFILE_ENV] = str(profile)
    return f"Fast DDS profile: {profile} (camera-sized transport buffers)"
