"""One exception tree; every message is one line a user can act on."""

from __future__ import annotations


class EdgecodecError(Exception):
    """Base class. The CLI maps ``exit_code`` to the process exit status."""

    exit_code = 1


class InputError(EdgecodecError):
    """Bad user input: unreadable image, odd arguments, existing output."""

    exit_code = 2


class BitstreamError(EdgecodecError):
    """The bytes are not a valid edgecodec stream."""

    exit_code = 2


class NotEdgecodecError(BitstreamError):
    pass


class UnsupportedVersionError(BitstreamError):
    pass


class CorruptStreamError(BitstreamError):
    pass


class DesyncError(CorruptStreamError):
    """The entropy decoder did not end in the encoder's initial state."""


class ModelMismatchError(BitstreamError):
    """The stream was made by another model than the one loaded."""


class BundleError(EdgecodecError):
    """A model bundle is missing, incomplete or fails its checksums."""

    exit_code = 2


class BackendUnavailableError(EdgecodecError):
    """A runtime is not installed, or its device or artifact is missing."""

    exit_code = 2


class ExportError(EdgecodecError):
    """An export step failed or its artifact failed validation."""
