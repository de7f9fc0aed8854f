"""Every setting of ``ciagan train``, read from YAML (``config/train.yaml`` lists them all)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ciagan_core.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """CIAGAN training (REFERENCE §4); defaults are the public implementation's."""

    #: Optimizer steps. One step: ``identity_updates`` siamese, ``critic_updates`` critic and
    #: ``generator_updates`` generator updates on one batch.
    steps: int = 20000
    batch_size: int = 16
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    identity_updates: int = 1
    critic_updates: int = 1
    generator_updates: int = 3
    #: Contrastive loss margin, and its weight in the generator's loss (LSGAN's is 1).
    contrastive_margin: float = 3.0
    identity_weight: float = 1.0
    #: Siamese embedding width (0: the number of training identities, as the public run).
    embedding_size: int = 0
    #: Random shift of the 128 px window inside the 144 px resize, in pixels (augmentation).
    jitter: int = 4
    #: Also mirror the source face (with its landmark drawing and mask) half of the time.
    flip: bool = True
    seed: int = 0
    #: cpu, cuda, cuda:N or auto (cuda when available).
    device: str = "auto"
    #: auto: bf16 autocast on CUDA devices that support it, else fp32.
    precision: str = "auto"
    #: Channels-last memory layout on CUDA (faster convolutions on tensor cores).
    channels_last: bool = True
    #: Threads that decode and render the training set once at start (0: all cores).
    workers: int = 0
    #: Progress, losses (CSV, TensorBoard when installed) every this many steps.
    log_every: int = 20
    #: Sample grid PNG every this many steps (0: only at the end).
    sample_every: int = 500
    #: Full and compact checkpoints every this many steps (0: only at the end / deadline).
    checkpoint_every: int = 1000
    #: Privacy and quality on held-out identities every this many steps (0: off).
    eval_every: int = 0
    eval_faces: int = 48
    #: Compact checkpoint: which networks to keep (comma-separated: generator, critic,
    #: identity; a network left out starts afresh on resume) and which optimizer states
    #: (none, generator, all). All three networks in half precision take about 80 MB.
    compact_networks: str = "generator,critic,identity"
    compact_optimizer: str = "none"
    #: Largest file of a compact checkpoint, MiB.
    compact_part_mib: int = 16
    #: Seconds to keep free before ``--time-limit`` for the final save.
    save_margin_s: float = 30.0
    #: Probe faces in the sample grid, and target identities per probe.
    sample_faces: int = 6
    sample_identities: int = 4
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def validate(self) -> None:
        positive = ("steps", "batch_size", "generator_updates", "compact_part_mib")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        counts = (
            "identity_updates",
            "critic_updates",
            "jitter",
            "embedding_size",
            "workers",
            "log_every",
            "sample_every",
            "checkpoint_every",
            "eval_every",
            "eval_faces",
        )
        for name in counts:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2 (the siamese pairs need two)")
        if not 0 < self.lr < 1:
            raise ConfigError(f"lr must be in (0, 1), got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.jitter > 8:
            raise ConfigError(
                f"jitter must be at most 8 px (the resize's margin), got {self.jitter}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.compact_optimizer not in ("none", "generator", "all"):
            raise ConfigError("compact_optimizer must be none, generator or all")
        kept = self.compact_network_names()
        if "generator" not in kept or not set(kept) <= {"generator", "critic", "identity"}:
            raise ConfigError(
                "compact_networks must list generator, and may add critic and identity, "
                f"got {self.compact_networks!r}"
            )
        if self.contrastive_margin <= 0 or self.identity_weight < 0:
            raise ConfigError("contrastive_margin must be positive, identity_weight >= 0")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be in 0..{2**32 - 1}, got {self.seed}")
        for name in ("sample_faces", "sample_identities"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_every and self.eval_faces < 2:
            raise ConfigError(f"eval_faces must be at least 2, got {self.eval_faces}")
        if self.save_margin_s < 0:
            raise ConfigError(f"save_margin_s must not be negative, got {self.save_margin_s}")

    def compact_network_names(self) -> list[str]:
        return [n.strip() for n in self.compact_networks.split(",") if n.strip()]

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("extra")
        out["betas"] = list(self.betas)
        return out

    def digest(self) -> str:
        """sha256 of the settings that shape the weights (not where or how long it runs)."""
        shaping = {
            k: v
            for k, v in self.as_dict().items()
            if k
            not in {
                "steps",
                "device",
                "workers",
                "log_every",
                "sample_every",
                "checkpoint_every",
                "eval_every",
                "eval_faces",
                "compact_networks",
                "compact_optimizer",
                "compact_part_mib",
                "save_margin_s",
                "sample_faces",
                "sample_identities",
            }
        }
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()


def known_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name != "extra"]


def config_from_mapping(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """A validated config; unknown keys and wrong types are errors that name the key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(values).__name__}")
    unknown = sorted(set(values) - set(known_keys()))
    if unknown:
        raise ConfigError(
            f"{source}: unknown setting {', '.join(map(repr, unknown))}; known settings: "
            f"{', '.join(known_keys())}"
        )
    defaults = TrainConfig()
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            # YAML 1.1 reads 1e-4 (no dot) as a string: take it as the number it means.
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = float(value)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
            ok = ok and math.isfinite(value)
        elif isinstance(default, tuple):
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, float)) for v in value
            )
            value = tuple(float(v) for v in value) if ok else value
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(f"{source}: {key} must be {type(default).__name__}, got {value!r}")
        kwargs[key] = value
    config = TrainConfig(**kwargs)
    try:
        config.validate()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file's settings, then command-line overrides."""
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        values = loaded or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
    values = {**values, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return config_from_mapping(values, source)


def render_config_yaml() -> str:
    """config/train.yaml: every setting with its default and its comment."""
    import inspect

    source = inspect.getsource(TrainConfig)
    comments: dict[str, list[str]] = {}
    pending: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
        elif ":" in stripped and not stripped.startswith(("def ", '"""', "extra")):
            name = stripped.split(":")[0]
            if name.isidentifier():
                comments[name] = pending
            pending = []
        else:
            pending = []
    defaults = TrainConfig().as_dict()
    lines = ["# ciagan train settings (every key; defaults shown). Generated from", ""]
    lines[0] += " ciagan_core/training/config.py."
    for key in known_keys():
        for comment in comments.get(key, []):
            lines.append(f"# {comment}")
        value = yaml.safe_dump({key: defaults[key]}, default_flow_style=True).strip()
        lines.append(value[1:-1] if value.startswith("{") else value)
    return "\n".join(lines) + "\n"
