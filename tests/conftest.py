"""Shared fixtures: the real data and the parity fixture live in ../shared (never copied here)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The face data and parity fixture: ../shared from the project root (CI's layout), or
#: CIAGAN_SHARED (a mutation run's copy of the project lives elsewhere).
SHARED = Path(os.environ.get("CIAGAN_SHARED") or ROOT.parent / "shared").resolve()
#: Set to 1 to run only the tests that need no shared data (the rest are skipped).
WITHOUT_DATA = "CIAGAN_TESTS_WITHOUT_DATA"

# The int8 CenterFace is built into a fresh cache per run (and by CLI subprocesses too), never
# into ~/.cache; set CIAGAN_CACHE_DIR to reuse one between runs.
if not os.environ.get("CIAGAN_CACHE_DIR"):
    os.environ["CIAGAN_CACHE_DIR"] = tempfile.mkdtemp(prefix="ciagan-test-cache-")
    atexit.register(shutil.rmtree, os.environ["CIAGAN_CACHE_DIR"], ignore_errors=True)


def pytest_sessionstart(session) -> None:
    """Without the shared data nearly every test would skip: stop at once, saying where the
    data is expected, unless only the data-free subset was asked for."""
    if not SHARED.is_dir() and os.environ.get(WITHOUT_DATA) != "1":
        pytest.exit(
            f"tests need the shared face data at {SHARED} (../shared from the project root, "
            f"or set CIAGAN_SHARED); {WITHOUT_DATA}=1 runs only the tests that need none",
            returncode=2,
        )


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test that starts a local Ray cluster (through the ``ray_local`` fixture)."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)


def _require(path: Path) -> Path:
    if path.exists():
        return path
    message = f"{path} not found: tests need the shared data at {SHARED}"
    if os.environ.get("CI") or os.environ.get(WITHOUT_DATA) != "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def parity_fixture(shared_dir: Path) -> dict[str, np.ndarray]:
    path = _require(shared_dir / "fixtures" / "official_generator_parity.npz")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def official_state(parity_fixture):
    """The fixture's generator state_dict under the published key names, as float32 tensors."""
    import torch

    return {
        k.removeprefix("state/"): torch.from_numpy(v.astype(np.float32))
        for k, v in parity_fixture.items()
        if k.startswith("state/")
    }


@pytest.fixture(scope="session")
def official_checkpoint(official_state, tmp_path_factory) -> Path:
    """A published-style ``modelG.pth`` saved from the fixture's state_dict."""
    import torch

    path = tmp_path_factory.mktemp("official") / "modelG.pth"
    torch.save(official_state, path)
    return path


@pytest.fixture(scope="session")
def model_file(official_checkpoint, tmp_path_factory) -> Path:
    """The fixture's generator imported into a model file."""
    from ciagan_core.model_file import import_official

    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    import_official(official_checkpoint, path)
    return path


@pytest.fixture
def checkpoint(official_checkpoint, tmp_path) -> Path:
    """A copy of ``official_checkpoint`` the test may overwrite or link to."""
    path = tmp_path / "modelG.pth"
    shutil.copyfile(official_checkpoint, path)
    return path


@pytest.fixture
def model(model_file, tmp_path) -> Path:
    """A copy of ``model_file`` the test may overwrite or link to."""
    path = tmp_path / "m.safetensors"
    shutil.copyfile(model_file, path)
    return path


#: faces.csv rows whose HOG box is not a face (a torso, a hand, a logo: checked by eye);
#: CenterFace correctly finds the real face elsewhere in these photos, so they cannot serve as
#: recall truth.
MISLABELLED = {"124193.jpg", "117899.jpg", "071467.jpg", "054649.jpg"}


@pytest.fixture(scope="session")
def celeba_rows(shared_dir: Path) -> list[dict[str, str]]:
    import csv

    with (shared_dir / "data" / "celeba_faces" / "faces.csv").open() as handle:
        return [r for r in csv.DictReader(handle) if r["file"] not in MISLABELLED]


def celeba_image(shared_dir: Path, row: dict[str, str]) -> np.ndarray:
    import cv2

    image = cv2.imread(str(shared_dir / "data" / "celeba_faces" / "images" / row["file"]))
    assert image is not None, row["file"]
    return image


def hog_box(row: dict[str, str]) -> np.ndarray:
    return np.array([float(row[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1")])


def sample_rows(rows: list[dict[str, str]], count: int) -> list[dict[str, str]]:
    """An evenly spread, deterministic sample (different identities and photos)."""
    step = max(1, len(rows) // count)
    return rows[::step][:count]


@pytest.fixture(scope="session")
def no_face_image() -> np.ndarray:
    """A real photo without a face (scikit-image's coffee cup, public domain)."""
    import cv2
    import skimage.data

    return cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)


def write_video(
    shared_dir: Path,
    rows: list[dict[str, str]],
    path: Path,
    frames: int = 30,
    fourcc: str = "MJPG",
    fps: float = 25.0,
    step: int = 1,
) -> Path:
    """A 320x320 clip of the first CelebA face, moving ``step`` px a frame."""
    import cv2

    base = cv2.resize(celeba_image(shared_dir, rows[0]), (320, 320))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (320, 320))
    for i in range(frames):
        writer.write(np.roll(base, step * i, axis=1))
    writer.release()
    return path


@pytest.fixture(scope="session")
def astronaut_face():
    """The public-domain astronaut's photo, CenterFace box (with keypoints) and dlib's 68
    landmarks, all real."""
    import cv2

    from ciagan_core.detection import create_detector
    from ciagan_core.landmarks import create_landmarker

    photo = cv2.imread(str(ROOT / "examples" / "astronaut.png"))
    [face] = [b for b in create_detector("centerface").detect(photo) if b.width > 50]
    [landmarks] = create_landmarker("dlib").landmarks(photo, [face])
    return photo, face, landmarks
