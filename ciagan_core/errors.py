"""Error types shared by the library, the CLI and the ROS shell.

Every error names what was wrong and, where possible, what to do about it. The CLI turns them into
one-line messages with a non-zero exit status; the node turns them into diagnostics.
"""

from __future__ import annotations


class CiaganError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelFileError(CiaganError):
    """A model file or checkpoint is missing, damaged, or not what it claims to be."""


class ConfigError(CiaganError, ValueError):
    """A setting is out of range or inconsistent with the loaded model."""


class InputError(CiaganError, ValueError):
    """An input frame or file cannot be processed (wrong shape, dtype, corrupt data)."""


class BackendUnavailableError(CiaganError):
    """A backend's optional dependency or weights are not installed."""
