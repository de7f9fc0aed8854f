#!/usr/bin/env python3
"""``ciagan bag`` against ``ciagan anonymize`` on the same frames: the cost of the bag itself.

Run from the project root: ``python benchmarks/bench_bag.py [--frames 120] [--runs 3]``. A
640x480 one-face recording (a real face moving over a real background, plus an IMU topic at
3x the camera rate) is written as an mcap bag and as PNG images; both tools anonymize it with
the default settings, in the same run, and the medians of ``--runs`` runs are compared. Writes
``benchmarks/results/bag_cpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from frames import make_frame  # noqa: E402

from ciagan_core.cli import main as ciagan  # noqa: E402


def write_inputs(folder: Path, count: int) -> tuple[Path, Path]:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    t = store.types
    base = make_frame((640, 480), 1, seed=3)
    images = folder / "images"
    images.mkdir()
    bag = folder / "bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cam = writer.add_connection("/camera/image", "sensor_msgs/msg/Image", typestore=store)
        imu = writer.add_connection("/imu", "sensor_msgs/msg/Imu", typestore=store)
        for i in range(count):
            frame = np.roll(base, 2 * i, axis=1)
            cv2.imwrite(str(images / f"{i:05d}.png"), frame)
            stamp = 1_700_000_000 * 10**9 + i * 33_000_000
            header = t["std_msgs/msg/Header"](
                stamp=t["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
                frame_id="camera",
            )
            msg = t["sensor_msgs/msg/Image"](
                header=header,
                height=480,
                width=640,
                encoding="bgr8",
                is_bigendian=0,
                step=640 * 3,
                data=frame.reshape(-1),
            )
            writer.write(cam, stamp, store.serialize_cdr(msg, cam.msgtype))
            vector = t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.81)
            imu_msg = t["sensor_msgs/msg/Imu"](
                header=header,
                orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                orientation_covariance=np.zeros(9),
                angular_velocity=vector,
                angular_velocity_covariance=np.zeros(9),
                linear_acceleration=vector,
                linear_acceleration_covariance=np.zeros(9),
            )
            for k in range(3):
                writer.write(
                    imu, stamp + k * 11_000_000, store.serialize_cdr(imu_msg, imu.msgtype)
                )
    return bag, images


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    status = ciagan(args)
    if status != 0:
        raise SystemExit(f"ciagan {' '.join(args)} failed ({status})")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ciagan-bench-bag-"))
    try:
        bag, images = write_inputs(folder, args.frames)
        ciagan(["anonymize", str(images), "-o", str(folder / "warm"), "--no-progress"])
        bag_s, image_s = [], []
        for run in range(args.runs):  # interleaved, so both see the same machine load
            out = folder / f"bag_out{run}"
            bag_s.append(timed(["bag", str(bag), str(out), "--no-progress"]))
            image_s.append(
                timed(["anonymize", str(images), "-o", str(folder / f"img{run}"), "--no-progress"])
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    bag_fps = args.frames / statistics.median(bag_s)
    image_fps = args.frames / statistics.median(image_s)
    result = {
        "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}",
        "frames": args.frames,
        "runs": args.runs,
        "bag_frames_per_s": round(bag_fps, 2),
        "images_frames_per_s": round(image_fps, 2),
        "bag_vs_images": round(bag_fps / image_fps, 3),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bag_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    text = "\n".join(
        [
            "# `ciagan bag` against `ciagan anonymize` (CPU)",
            "",
            f"Machine: {result['machine']}. {args.frames} frames of 640x480 with one face "
            f"(plus an IMU topic at 3x the rate), default settings, medians of {args.runs} "
            "interleaved runs; each tool's time includes its start (models load, files open).",
            "",
            "| tool | frames/s |",
            "|---|---|",
            f"| `ciagan bag` (mcap in, mcap out) | {bag_fps:.1f} |",
            f"| `ciagan anonymize` (PNG files in and out) | {image_fps:.1f} |",
            "",
            f"The bag runs at {result['bag_vs_images']:.2f}x the speed of the same frames as "
            "images. It decodes every frame twice (detection first, for tracking in both "
            "directions; then anonymization) but detects faces once, and its frames are raw "
            "messages instead of PNG files.",
            "",
        ]
    )
    (args.out / "bag_cpu.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
