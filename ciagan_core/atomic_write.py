"""Writing files so that a failure leaves nothing half-written at the destination."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path``: renamed onto ``path`` on success, removed on failure
    (an exception or Ctrl-C). ``suffix`` ends the temporary name (writers that choose their
    format by the file name need the real one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``path.write_bytes(data)``, all or nothing."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def check_output_name(output: Path) -> Path:
    """Refuse (one-line InputError) a file name that no file can be written to: an existing
    folder ('.' included: a file is renamed onto the name at the end), something else that is
    not a regular file (a FIFO, a device: it would be replaced), or a name below a file.
    Returns the existing folder the file would be written in (or below)."""
    from ciagan_core.errors import InputError

    if output.is_dir():
        raise InputError(f"{output}: is a folder; name the file to write (in it, or elsewhere)")
    if output.exists() and not output.is_file():
        raise InputError(f"{output}: exists and is not a regular file; name another output")
    folder = output.absolute().parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent  # the folders still to create are created below this one
    if not folder.is_dir():
        raise InputError(f"{output}: {folder} is not a folder; name another output")
    return folder
