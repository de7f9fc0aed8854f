"""TensorRT engine cache, keyed like Isaac ROS and Autoware do it.

An engine is only valid for the exact ONNX it was built from, the TensorRT version that built it,
the GPU (name and compute capability), the precision and the largest batch of its optimization
profile. The cache mechanism (sidecar record, sha256 check, rebuild or refuse) is
``ciagan_core.build_cache``; this module holds the engine's key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ciagan_core import build_cache
from ciagan_core.build_cache import BuildCacheError, key_digest, sidecar

#: Engine cache failures are build-cache failures (the name callers and tests know).
EngineCacheError = BuildCacheError

__all__ = [
    "EngineCacheError",
    "EngineKey",
    "load_or_build",
    "read_engine",
    "sidecar",
    "write_engine",
]


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
        return key_digest(self)

    def filename(self, stem: str) -> str:
        """A cache file name that differs whenever any part of the key differs."""
        return f"{stem}-{self.precision}-b{self.max_batch}-{self.digest()[:16]}.engine"


def read_engine(path: Path, key: EngineKey) -> bytes:
    """The engine at ``path`` if it was built for ``key`` and is intact; else EngineCacheError."""
    return build_cache.read_cached(path, key, "engine")


def write_engine(path: Path, key: EngineKey, data: bytes) -> None:
    """Write an engine and its sidecar atomically."""
    build_cache.write_cached(path, key, data)


def load_or_build(
    path: Path,
    key: EngineKey,
    build: Callable[[], bytes],
    rebuild: bool = True,
    force: bool = False,
) -> tuple[bytes, str]:
    """The engine for ``key`` at ``path`` and how it was obtained: "cached", "built", "rebuilt"
    (``build_cache.load_or_build``)."""
    return build_cache.load_or_build(path, key, build, rebuild, force, what="engine")
