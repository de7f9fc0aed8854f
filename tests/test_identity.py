"""Identity policies, their YAML form, and the rule that the source identity is never used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ciagan_core.errors import ConfigError
from ciagan_core.identity import IdentityConfig, IdentitySelector
from ciagan_core.tracking import IoUTracker

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_identity_yaml_loads():
    config = IdentityConfig.from_yaml(ROOT / "config" / "identity.yaml")
    assert config.policy == "per_track"
    config.validate(1200)


def test_yaml_with_pool(tmp_path):
    path = tmp_path / "ids.yaml"
    path.write_text("policy: pool\npool: [3, 5, 8]\nseed: 2\n")
    config = IdentityConfig.from_yaml(path)
    assert config.pool == (3, 5, 8)
    chosen = IdentitySelector(config, 10).choose([1, 2, 3, 4, 5])
    assert set(chosen) <= {3, 5, 8}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policy: sometimes\n", "unknown identity policy 'sometimes'"),
        ("policy: pool\n", "needs a non-empty pool"),
        ("policy: fixed\nidentity: seven\n", "invalid identity settings"),
        ("policy: fixed\ncolour: red\n", "unknown identity settings: colour"),
        ("policy: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_yaml_is_a_clear_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "ids.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        IdentityConfig.from_yaml(path)
    assert "ids.yaml" in str(info.value)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read identity settings"):
        IdentityConfig.from_yaml(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    "config",
    [IdentityConfig(policy="fixed", identity=1200), IdentityConfig(policy="pool", pool=(5, -1))],
)
def test_out_of_range_identities_are_refused(config):
    with pytest.raises(ConfigError, match="has 1200 identities"):
        IdentitySelector(config, 1200)


def test_fixed_gives_the_next_identity_to_its_own_source():
    selector = IdentitySelector(IdentityConfig(policy="fixed", identity=7), 10)
    assert selector.choose([None, None], sources=[3, 7]) == [7, 8]
    selector = IdentitySelector(IdentityConfig(policy="fixed", identity=9), 10)
    assert selector.choose([None], sources=[9]) == [0]


@pytest.mark.parametrize("policy", ["random", "per_track"])
def test_a_source_never_gets_its_own_identity(policy):
    selector = IdentitySelector(IdentityConfig(policy=policy, seed=5), 3)
    for frame in range(200):
        chosen = selector.choose([frame, frame + 1000], sources=[1, 2])
        assert chosen[0] != 1 and chosen[1] != 2


def test_a_pool_of_only_the_source_is_an_error():
    selector = IdentitySelector(IdentityConfig(policy="pool", pool=(4,)), 10)
    with pytest.raises(ConfigError, match="only the source 4"):
        selector.choose([1], sources=[4])


def test_random_is_reproducible_and_reset_restarts_it():
    selector = IdentitySelector(IdentityConfig(policy="random", seed=9), 1200)
    first = [selector.choose([None, None]) for _ in range(5)]
    selector.reset()
    assert [selector.choose([None, None]) for _ in range(5)] == first
    assert len({i for pair in first for i in pair}) > 5


def test_per_track_is_stable_and_forgets_ended_tracks():
    selector = IdentitySelector(IdentityConfig(policy="per_track", seed=1), 1200)
    a = selector.choose([1, 2])
    assert selector.choose([2, 1]) == a[::-1]
    selector.forget([1])
    assert 1 not in selector._by_track


def test_tracker_follows_overlapping_boxes_and_holds_lost_ones():
    tracker = IoUTracker(iou_threshold=0.3, max_missed=2)
    ids, held, _ = tracker.update(np.array([[0, 0, 10, 10], [50, 50, 60, 60]]))
    assert ids == [1, 2] and held == []
    ids, held, _ = tracker.update(np.array([[52, 51, 62, 61]]))
    assert ids == [2] and [t.track_id for t in held] == [1]
    tracker.update(np.zeros((0, 4)))
    _, held, ended = tracker.update(np.zeros((0, 4)))
    assert ended == [1] and [t.track_id for t in held] == [2]
    ids, _, _ = tracker.update(np.array([[0, 0, 10, 10]]))
    assert ids == [3]  # a new face gets a new id
