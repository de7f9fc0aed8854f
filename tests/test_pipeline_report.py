"""What the pipeline reports about each frame, which the node's diagnostics, the CLI's summary
and the bag tool's report pass on: how long each stage took, the faces the tracker held, and a
landmarker's failure (logged, and every face covered by its box)."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from ros_node import face_scene, unchanged_share

from ciagan_core import pipeline
from ciagan_core.frames import WorkingFrame
from ciagan_core.pipeline import STAGES, Anonymizer, AnonymizerConfig, anonymize_together

DELAY_S = 0.06


@pytest.fixture(scope="module")
def scene(shared_dir):
    return face_scene()


def _slowed(function):
    """``function`` DELAY_S slower (a method too, set on its class)."""

    def slow(*args, **kwargs):
        time.sleep(DELAY_S)
        return function(*args, **kwargs)

    return slow


class _Slow:
    """The wrapped object, its ``method`` DELAY_S slower."""

    def __init__(self, wrapped, method: str):
        self._wrapped, self._method = wrapped, method

    def __getattr__(self, name):
        attribute = getattr(self._wrapped, name)
        return _slowed(attribute) if name == self._method else attribute


def test_each_stage_timing_measures_its_own_stage(scene, model_file, monkeypatch):
    """Each stage made DELAY_S slower (blending twice: into the frame, and back to the input's
    layout): its timing holds the delay, and no timing exceeds the frame's own wall time."""
    anonymizer = Anonymizer(AnonymizerConfig(method="ciagan", model=str(model_file)))
    anonymizer.detector = _Slow(anonymizer.detector, "detect")
    anonymizer.landmarker = _Slow(anonymizer.landmarker, "landmarks")
    anonymizer.engine = _Slow(anonymizer.engine, "run")
    for name in ("align_face", "composite"):  # the align and blend stages
        monkeypatch.setattr(pipeline, name, _slowed(getattr(pipeline, name)))
    # blend's second part: back to the input's layout
    monkeypatch.setattr(WorkingFrame, "restore", _slowed(WorkingFrame.restore))
    start = time.perf_counter()
    result = anonymizer.process(scene[0])
    wall_ms = (time.perf_counter() - start) * 1e3
    assert [f.method for f in result.faces] == ["ciagan"]
    assert set(result.timings) == set(STAGES)
    delays = {"detect": 1, "landmarks": 1, "align": 1, "generate": 1, "blend": 2}
    for stage, count in delays.items():
        assert count * DELAY_S * 1e3 <= result.timings[stage] <= wall_ms, (stage, result.timings)
    assert sum(result.timings.values()) <= wall_ms


def test_a_face_the_detector_misses_is_held_by_the_tracker_on_its_box(scene):
    """Found in one frame, missed in the next: the tracker holds it, with its box, its track,
    the fallback method over the whole box, and why."""
    frame, _ = scene
    anonymizer = Anonymizer(AnonymizerConfig(method="blur", hold_frames=3))
    [first] = anonymizer.process(frame).faces
    [missed] = anonymize_together([(anonymizer, frame)], detections=[[]])
    [held] = missed.faces
    box = first.box
    assert (held.box.x0, held.box.y0, held.box.x1, held.box.y1) == pytest.approx(
        (box.x0, box.y0, box.x1, box.y1), abs=1.0
    )
    assert (held.box.score, held.box.detector) == (0.0, "tracker")
    assert held.track_id == first.track_id
    assert (held.method, held.region) == ("pixelate", "box")  # the fallback, not blur
    assert held.fallback_reason == "held: not detected for 1 frame(s)"
    x0, y0, x1, y1 = (int(v) for v in held.box.as_array())
    assert unchanged_share(missed.image, frame, (x0, y0, x1, y1)) <= 0.05
    # Nothing found and nothing held: no face at all, the frame as it came.
    empty = Anonymizer(AnonymizerConfig(method="pixelate", hold_frames=3))
    [nothing] = anonymize_together([(empty, frame)], detections=[[]])
    assert nothing.faces == [] and (nothing.image == frame).all()
    assert nothing.timings["generate"] == 0.0  # no generator call, no time


def test_a_landmarker_that_fails_is_logged_and_every_face_covered_by_its_box(
    scene, model_file, caplog
):
    frame, box = scene
    anonymizer = Anonymizer(AnonymizerConfig(method="ciagan", model=str(model_file)))

    class Broken:
        def landmarks(self, image, boxes):
            raise RuntimeError("out of memory")

    anonymizer.landmarker = Broken()
    with caplog.at_level(logging.ERROR, logger=pipeline.log.name):
        result = anonymizer.process(frame)
    [face] = result.faces
    assert face.fallback_reason == "landmarker error: out of memory"
    assert face.method == "pixelate" and face.landmarks is None
    assert unchanged_share(result.image, frame, box) <= 0.05
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "landmarks failed, covering 1 faces by box: out of memory")
    ]


class _Engine:
    """The real engine's outputs, replaced by ``make(outputs)`` when given; times its calls."""

    def __init__(self, real, make=None):
        self.real, self.make, self.spent = real, make, 0.0
        self.num_identities = real.num_identities

    def run(self, inputs, identities):
        start = time.perf_counter()
        time.sleep(DELAY_S)
        out = self.real.run(inputs, identities)
        self.spent += time.perf_counter() - start
        return out if self.make is None else self.make(np.asarray(out))


def test_the_generator_time_is_shared_out_over_the_frames_of_a_batch(scene, model_file):
    """Two frames, one generator call: each frame reports half of it."""
    anonymizer = Anonymizer(AnonymizerConfig(method="ciagan", model=str(model_file)))
    engine = anonymizer.engine = _Engine(anonymizer.engine)
    results = anonymizer.process_batch([scene[0], scene[0][:, ::-1].copy()])
    assert [f.method for r in results for f in r.faces] == ["ciagan", "ciagan"]
    assert all(isinstance(f.identity, int) for r in results for f in r.faces)
    generate = [r.timings["generate"] for r in results]
    assert generate[0] == pytest.approx(generate[1])
    assert engine.spent * 1e3 <= sum(generate) < 2 * engine.spent * 1e3


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda out: out * np.nan, "generator produced NaN or infinite values"),
        (
            lambda out: np.rint(out).astype(np.int64),
            "generator returned int64 (2, 3, 128, 128), expected float (2, 3, 128, 128)",
        ),
        (
            lambda out: out[:, :2],
            "generator returned float32 (2, 2, 128, 128), expected float (2, 3, 128, 128)",
        ),
        (
            lambda out: out[:1],
            "generator returned float32 (1, 3, 128, 128), expected float (2, 3, 128, 128)",
        ),
    ],
    ids=["nan", "integers", "two channels", "one face short"],
)
def test_a_generator_output_that_cannot_be_used_sends_every_face_to_the_fallback(
    scene, model_file, caplog, make, reason
):
    """Its reason on every face, one line in the log, and every face covered."""
    frame, box = scene
    anonymizer = Anonymizer(AnonymizerConfig(method="ciagan", model=str(model_file)))
    anonymizer.engine = _Engine(anonymizer.engine, make)
    with caplog.at_level(logging.ERROR, logger=pipeline.log.name):
        results = anonymizer.process_batch([frame, frame])
    faces = [f for r in results for f in r.faces]
    assert [(f.method, f.fallback_reason) for f in faces] == [
        ("pixelate", f"generator error: {reason}")
    ] * 2
    assert all(f.identity is None for f in faces)
    for result in results:
        assert unchanged_share(result.image, frame, box) <= 0.05
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, f"generation failed for 2 faces, using the fallback: {reason}")
    ]


def test_frames_anonymized_together_must_share_one_engine(scene, model_file):
    """Two cameras' anonymizers with engines of their own cannot share a generator call."""
    from ciagan_core.errors import ConfigError

    config = AnonymizerConfig(method="ciagan", model=str(model_file))
    one, two = Anonymizer(config), Anonymizer(config)
    assert one.engine is not two.engine
    with pytest.raises(ConfigError, match="frames anonymized together must share one engine"):
        anonymize_together([(one, scene[0]), (two, scene[0])])
    two.engine = one.engine
    results = anonymize_together([(one, scene[0]), (two, scene[0])])
    assert [f.method for r in results for f in r.faces] == ["ciagan", "ciagan"]


def test_a_landmarker_that_loses_a_face_stops_the_frame(scene):
    """Fewer landmark sets than faces: the frame is refused (an error its caller drops or
    covers), never passed on with the face left out."""
    frame, _ = scene
    anonymizer = Anonymizer(AnonymizerConfig(method="blur", region="mask"))

    class Forgetful:
        def landmarks(self, image, boxes):
            return []

    anonymizer.landmarker = Forgetful()
    with pytest.raises(ValueError, match="zip"):
        anonymizer.process(frame)


def test_the_configured_eye_distance_reaches_the_landmark_rules(scene, model_file):
    """min_eye_distance is the pipeline's own setting, not the rule's default: set far above
    any face, every face goes to the fallback as too small."""
    config = AnonymizerConfig(method="ciagan", model=str(model_file), min_eye_distance=500.0)
    [face] = Anonymizer(config).process(scene[0]).faces
    assert face.fallback_reason.startswith("face too small or rotated")
    assert face.landmarks is None and face.method == "pixelate"
    [generated] = (
        Anonymizer(AnonymizerConfig(method="ciagan", model=str(model_file)))
        .process(scene[0])
        .faces
    )
    assert generated.landmarks.shape == (68, 2) and not generated.fallback_reason
