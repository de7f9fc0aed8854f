"""Which identity each generated face gets (REFERENCE §3.6: never the source's own).

Policies:
- ``fixed``: ``identity`` for every face;
- ``random``: a new draw per face per frame (seeded);
- ``per_track``: a face keeps its identity while the tracker follows it;
- ``pool``: like ``per_track``, drawing only from ``pool``.
``pool``, when given, also restricts ``random`` and ``per_track``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ciagan_core.errors import ConfigError

POLICIES = ("fixed", "random", "per_track", "pool")


@dataclass(frozen=True)
class IdentityConfig:
    """Identity selection settings (YAML: the keys below, optionally under ``identity:``)."""

    policy: str = "per_track"
    identity: int = 0
    pool: tuple[int, ...] = field(default_factory=tuple)
    seed: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IdentityConfig:
        # "identity:" is both the optional wrapper and the fixed id; a mapping means the wrapper.
        if isinstance(data, Mapping) and isinstance(data.get("identity"), Mapping):
            data = data["identity"]
        if not isinstance(data, Mapping):
            raise ConfigError(f"identity settings must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {"policy", "identity", "pool", "seed"}
        if unknown:
            raise ConfigError(f"unknown identity settings: {', '.join(sorted(unknown))}")
        try:
            config = cls(
                policy=str(data.get("policy", cls.policy)),
                identity=int(data.get("identity", 0)),
                pool=tuple(int(i) for i in data.get("pool", ()) or ()),
                seed=int(data.get("seed", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid identity settings: {exc}") from None
        config.check_policy()
        return config

    @classmethod
    def from_spec(cls, spec: str, seed: int = 0) -> IdentityConfig:
        """``per_track``, ``random``, ``fixed:ID``, ``pool:ID,ID``, a bare ID, or a YAML path:
        the one spelling of the CLI, the node's ``camera_identities`` and the bag tool."""
        spec = spec.strip()
        if spec.endswith((".yaml", ".yml")):
            return cls.from_yaml(spec)
        name, _, arg = spec.partition(":")
        if name.isdigit():
            name, arg = "fixed", name
        try:
            ids = [int(x) for x in arg.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"bad identity {spec!r}: identities are integers") from None
        if name == "fixed":
            if len(ids) != 1:
                raise ConfigError(f"bad identity {spec!r}: 'fixed' takes one identity")
            return cls(policy="fixed", identity=ids[0], seed=seed)
        if name == "pool":
            return cls.from_dict({"policy": "pool", "pool": ids, "seed": seed})
        return cls.from_dict({"policy": name, "seed": seed})

    @classmethod
    def from_yaml(cls, path: str | Path) -> IdentityConfig:
        """``config/identity.yaml``, or the node-wide policy of a ROS 2 parameters file such
        as ``config/identities.yaml``."""
        data = read_yaml(path, "identity settings")
        try:
            params = _ros_parameters(data)
            return identity_from_parameters(params) if params is not None else cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def check_policy(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(
                f"unknown identity policy {self.policy!r}; choose one of {', '.join(POLICIES)}"
            )
        if self.policy == "pool" and not self.pool:
            raise ConfigError("identity policy 'pool' needs a non-empty pool")

    def validate(self, num_identities: int, model_name: str = "the model") -> None:
        """Raise ConfigError if any configured identity is outside 0..num_identities-1."""
        self.check_policy()
        ids = list(self.pool) + ([self.identity] if self.policy == "fixed" else [])
        for i in ids:
            if not 0 <= i < num_identities:
                raise ConfigError(
                    f"{model_name} has {num_identities} identities but the identity settings "
                    f"select id {i} (valid: 0..{num_identities - 1})"
                )


def identity_from_parameters(params: Mapping[str, Any]) -> IdentityConfig:
    """The node-wide identity settings among a node's parameters (``identity_policy``,
    ``identity``, ``identity_pool`` as "ID,ID,...", ``identity_seed``)."""
    pool = str(params.get("identity_pool", "") or "")
    try:
        ids = [int(x) for x in pool.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"identity_pool must be comma-separated integers, got {pool!r}"
        ) from None
    return IdentityConfig.from_dict(
        {
            "policy": params.get("identity_policy", "per_track"),
            "identity": params.get("identity", 0),
            "pool": ids,
            "seed": params.get("identity_seed", 0),
        }
    )


def _ros_parameters(data: Any) -> Mapping[str, Any] | None:
    """The first ``NODE: ros__parameters:`` section of a ROS 2 parameters file, else None."""
    if not isinstance(data, Mapping):
        return None
    for section in data.values():
        params = section.get("ros__parameters") if isinstance(section, Mapping) else None
        if isinstance(params, Mapping):
            return params
    return None


def read_yaml(path: str | Path, what: str) -> Any:
    """A YAML file's content; ConfigError names the file and ``what`` it should hold."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None


class IdentitySelector:
    """Deterministic identity assignment for a stream of frames."""

    def __init__(self, config: IdentityConfig, num_identities: int):
        config.validate(num_identities)
        self.config = config
        self.num_identities = num_identities
        self._candidates = np.array(config.pool or range(num_identities), dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Start over: same seed, no remembered tracks."""
        self._rng = np.random.default_rng(self.config.seed)
        self._by_track: dict[int, int] = {}

    def _draw(self, source: int | None) -> int:
        candidates = self._candidates
        if source is not None:
            candidates = candidates[candidates != source]
        if candidates.size == 0:
            raise ConfigError(
                f"no identity left to choose: the pool holds only the source {source}"
            )
        return int(candidates[self._rng.integers(candidates.size)])

    def choose(
        self, track_ids: Sequence[int | None], sources: Sequence[int | None] | None = None
    ) -> list[int]:
        """One identity per face; ``sources`` are the people's own identities where known."""
        sources = list(sources) if sources is not None else [None] * len(track_ids)
        chosen = []
        for track, source in zip(track_ids, sources, strict=True):
            policy = self.config.policy
            if policy == "fixed":
                identity = self.config.identity
                if identity == source:  # the published demo's rule: the next identity
                    identity = (identity + 1) % self.num_identities
            elif policy == "random" or track is None:
                identity = self._draw(source)
            else:
                identity = self._by_track.get(track, -1)
                if identity < 0 or identity == source:
                    identity = self._draw(source)
                    self._by_track[track] = identity
            chosen.append(identity)
        return chosen

    def forget(self, track_ids: Sequence[int]) -> None:
        """Drop ended tracks so memory stays bounded on long streams."""
        for track in track_ids:
            self._by_track.pop(track, None)
