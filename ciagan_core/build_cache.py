"""Files built on the machine that uses them (TensorRT engines, the int8 detector), cached.

A cached file is only valid for the exact key it was built for: a frozen dataclass naming every
input its bytes depend on. Every file has a JSON sidecar (``X.json``) holding that key and the
file's sha256. Loading checks both: a stale, mismatched or damaged file is rebuilt, or refused
when rebuilding is off, and never silently used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ciagan_core.atomic_write import write_bytes_atomic
from ciagan_core.errors import CiaganError

log = logging.getLogger(__name__)


class BuildCacheError(CiaganError):
    """A cached file cannot be used and (re)building it is not allowed."""


def key_digest(key: Any) -> str:
    """The sha256 of a key: part of a cache file name that differs whenever the key differs."""
    return hashlib.sha256(json.dumps(asdict(key), sort_keys=True).encode()).hexdigest()


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_cached(path: Path, key: Any, what: str = "file") -> bytes:
    """The bytes at ``path`` if they were built for ``key`` and are intact; else BuildCacheError.

    ``what`` names the file in messages ("engine", "detector model").
    """
    meta_path = sidecar(path)
    if not path.is_file():
        raise BuildCacheError(f"{path}: {what} file not found")
    if not meta_path.is_file():
        raise BuildCacheError(f"{path}: no {meta_path.name} records what it was built for")
    try:
        meta = json.loads(meta_path.read_text())
        recorded = type(key)(**meta["key"])
        expected_sha = meta["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildCacheError(f"{meta_path}: unreadable {what} record ({exc})") from None
    if recorded != key:
        old, new = asdict(recorded), asdict(key)
        changed = [k for k, v in new.items() if old[k] != v]
        raise BuildCacheError(
            f"{path}: stale {what}, built for a different "
            + ", ".join(f"{k} ({old[k]} != {new[k]})" for k in changed)
        )
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha:
        raise BuildCacheError(f"{path}: {what} file is damaged (sha256 mismatch)")
    return data


def write_cached(path: Path, key: Any, data: bytes) -> None:
    """Write a file and its sidecar, each atomically; the sidecar last, so a file whose sidecar
    is missing or stale is never taken for valid."""
    meta = {"key": asdict(key), "sha256": hashlib.sha256(data).hexdigest()}
    write_bytes_atomic(path, data)
    write_bytes_atomic(sidecar(path), (json.dumps(meta, indent=2) + "\n").encode())


def load_or_build(
    path: Path,
    key: Any,
    build: Callable[[], bytes],
    rebuild: bool = True,
    force: bool = False,
    what: str = "file",
) -> tuple[bytes, str]:
    """The bytes for ``key`` at ``path`` and how they were obtained: "cached", "built" or
    "rebuilt".

    ``force`` rebuilds even a valid file (Isaac ROS's ``force_engine_update``); ``rebuild=False``
    refuses to build and raises BuildCacheError when the file is missing or unusable. A file
    that cannot be written (a read-only disk) is still returned, with a warning: it is simply
    built again next time.
    """
    status = "built"
    if not force:
        try:
            return read_cached(path, key, what), "cached"
        except BuildCacheError as exc:
            if not path.exists():
                if not rebuild:
                    raise BuildCacheError(f"{exc}; building is off") from None
            else:
                if not rebuild:
                    raise BuildCacheError(f"{exc}; rebuilding is off") from None
                log.warning("%s; rebuilding", exc)
                status = "rebuilt"
    data = build()
    try:
        write_cached(path, key, data)
    except OSError as exc:
        log.warning("cannot cache the %s at %s (%s); it is built again next time", what, path, exc)
    return data, status
