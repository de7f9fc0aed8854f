#!/usr/bin/env python3
"""Fleet benchmark: bags/hour for a serial loop of ``ciagan bag``, and ``ciagan fleet`` on a
local Ray with 1 and 2 workers, on the same bags in the same run; plus the fixed cost of
starting Ray. Run from the project root: ``python benchmarks/bench_fleet.py [--bags 6]``.
Writes ``benchmarks/results/fleet_cpu.{json,md}``.

The bags hold real shared faces moving over a 640x480 frame at 10 frames/s, with a second
topic of small messages, in both storages.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import SHARED, celeba_rows, face_patch

from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros.bag_tool import BagSettings, anonymize_bag
from ciagan_ros.fleet import FleetSettings, run_fleet

NS = 10**9


def write_bag(path: Path, faces: list[np.ndarray], frames: int, storage: str) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    types = store.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        image = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=store)
        note = writer.add_connection("/note", "std_msgs/msg/String", typestore=store)
        for i in range(frames):
            canvas = np.full((480, 640, 3), 70, np.uint8)
            for k, face in enumerate(faces):
                x, y = 20 + 200 * k + i, 120
                canvas[y : y + face.shape[0], x : x + face.shape[1]] = face
            stamp = 1_700_000_000 * NS + i * 100_000_000
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS),
                frame_id="cam",
            )
            msg = types["sensor_msgs/msg/Image"](
                header=header,
                height=480,
                width=640,
                encoding="bgr8",
                is_bigendian=0,
                step=1920,
                data=canvas.reshape(-1),
            )
            writer.write(image, stamp, store.serialize_cdr(msg, image.msgtype))
            text = types["std_msgs/msg/String"](data=f"frame {i}")
            writer.write(note, stamp + 1, store.serialize_cdr(text, note.msgtype))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bags", type=int, default=6)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    import ray

    rows = celeba_rows(SHARED)
    faces = [cv2.resize(face_patch(SHARED, rows[i * 97]), (160, 160)) for i in range(3)]
    config, settings = AnonymizerConfig(), BagSettings()
    result: dict = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "bags": args.bags,
        "frames_per_bag": args.frames,
        "ray": ray.__version__,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bags = []
        for i in range(args.bags):
            bags.append(tmp / "in" / f"bag{i}")
            write_bag(bags[-1], faces[: 1 + i % 3], args.frames, "mcap" if i % 2 else "sqlite3")

        (tmp / "serial").mkdir()
        start = time.perf_counter()
        for bag in bags:
            anonymize_bag(bag, tmp / "serial" / bag.name, config, settings)
        serial = time.perf_counter() - start
        result["runs"]["serial ciagan bag"] = serial

        start = time.perf_counter()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        result["ray_start_s"] = time.perf_counter() - start
        for workers in (1, 2):
            out = tmp / f"fleet{workers}"
            start = time.perf_counter()
            report = run_fleet(
                bags, out, config, settings, FleetSettings(ray_address="local", workers=workers)
            )
            assert report["done"] == args.bags, report
            result["runs"][f"ray, {workers} worker{'s' * (workers > 1)}"] = (
                time.perf_counter() - start
            )
        ray.shutdown()
    for name, seconds in result["runs"].items():
        result["runs"][name] = {
            "seconds": round(seconds, 2),
            "bags_per_hour": round(args.bags * 3600 / seconds, 1),
            "vs_serial": round(serial / seconds, 2),
        }
    result["ray_start_s"] = round(result["ray_start_s"], 2)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "fleet_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Fleet benchmark (CPU)",
        "",
        f"{result['machine']['platform']}, {os.cpu_count()} CPUs, Ray {ray.__version__}. "
        f"{args.bags} bags of {args.frames} frames (640x480, 1-3 real faces each), sqlite3 "
        "and mcap; one run of each, in this order, on the same bags.",
        "",
        "| run | seconds | bags/hour | x serial |",
        "|---|---|---|---|",
    ]
    for name, r in result["runs"].items():
        lines.append(
            f"| {name} | {r['seconds']:.1f} | {r['bags_per_hour']:.0f} | {r['vs_serial']:.2f} |"
        )
    lines += [
        "",
        f"Starting Ray here took {result['ray_start_s']:.1f} s; each Ray run also starts its "
        "workers, which load the pipeline (detector, landmarker) once each.",
        "",
    ]
    (args.output_dir / "fleet_cpu.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
