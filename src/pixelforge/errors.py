"""Errors: PixelforgeError for bad input or configuration, ItemError for one bad item."""

from __future__ import annotations


class PixelforgeError(Exception):
    """A problem with the user's input or configuration.

    The CLI prints the message as one line (``Error: ...``) and exits with code 2, so every
    message must name the bad value and the fix.
    """

    exit_code = 2


class UsageError(PixelforgeError):
    """A bad command-line argument or config value."""


class DatasetError(PixelforgeError):
    """A dataset directory that is missing, incomplete or of an unknown schema version."""


class ItemError(Exception):
    """One input item (an image, an annotation, a URL) that cannot become a sample.

    It never stops a run: the stage turns it into a failure row whose ``reason`` is the
    subclass's ``reason`` (a member of ``pixelforge.store.schema.FAILURE_REASONS``) and whose
    ``detail`` is the message.
    """

    reason = "error"

    def __init__(self, detail: str = "", reason: str | None = None):
        super().__init__(detail)
        if reason is not None:
            self.reason = reason

    @property
    def detail(self) -> str:
        return str(self)
