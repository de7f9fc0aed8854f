"""TensorRT engine cache, keyed like Isaac ROS and Autoware do it.

An engine is only valid for the exact ONNX it was built from, the TensorRT version that built it,
the GPU (name and compute capability), the precision and the largest batch of its optimization
profile. Every engine file has a JSON sidecar (``X.engine.json``) holding that key and the engine
bytes' sha256. Loading checks both: a stale, mismatched or damaged engine is rebuilt, or refused
when rebuilding is off, and never silently used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ciagan_core.atomic_write import write_bytes_atomic
from ciagan_core.errors import CiaganError

log = logging.getLogger(__name__)


class EngineCacheError(CiaganError):
    """An engine file cannot be used and rebuilding it is not allowed."""


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    max_batch: int

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def filename(self, stem: str) -> str:
        """A cache file name that differs whenever any part of the key differs."""
        return f"{stem}-{self.precision}-b{self.max_batch}-{self.digest()[:16]}.engine"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_engine(path: Path, key: EngineKey) -> bytes:
    """The engine at ``path`` if it was built for ``key`` and is intact; else EngineCacheError."""
    meta_path = sidecar(path)
    if not path.is_file():
        raise EngineCacheError(f"{path}: engine file not found")
    if not meta_path.is_file():
        raise EngineCacheError(f"{path}: no {meta_path.name} records what it was built for")
    try:
        meta = json.loads(meta_path.read_text())
        recorded = EngineKey(**meta["key"])
        expected_sha = meta["engine_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineCacheError(f"{meta_path}: unreadable engine record ({exc})") from None
    if recorded != key:
        changed = [k for k, v in asdict(key).items() if asdict(recorded)[k] != v]
        raise EngineCacheError(
            f"{path}: stale engine, built for a different "
            + ", ".join(f"{k} ({asdict(recorded)[k]} != {asdict(key)[k]})" for k in changed)
        )
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha:
        raise EngineCacheError(f"{path}: engine file is damaged (sha256 mismatch)")
    return data


def write_engine(path: Path, key: EngineKey, data: bytes) -> None:
    """Write an engine and its sidecar atomically."""
    meta = {"key": asdict(key), "engine_sha256": hashlib.sha256(data).hexdigest()}
    write_bytes_atomic(path, data)
    write_bytes_atomic(sidecar(path), json.dumps(meta, indent=2).encode())


def load_or_build(
    path: Path,
    key: EngineKey,
    build: Callable[[], bytes],
    rebuild: bool = True,
    force: bool = False,
) -> tuple[bytes, str]:
    """The engine for ``key`` at ``path`` and how it was obtained: "cached", "built", "rebuilt".

    ``force`` rebuilds even a valid engine (Isaac ROS's ``force_engine_update``); ``rebuild=False``
    refuses to build and raises EngineCacheError when the file is missing or unusable.
    """
    status = "built"
    if not force:
        try:
            return read_engine(path, key), "cached"
        except EngineCacheError as exc:
            if not path.exists():
                if not rebuild:
                    raise EngineCacheError(f"{exc}; building is off") from None
            else:
                if not rebuild:
                    raise EngineCacheError(f"{exc}; rebuilding is off") from None
                log.warning("%s; rebuilding", exc)
                status = "rebuilt"
    data = build()
    write_engine(path, key, data)
    return data, status
