"""The one error hierarchy of hoplon.

Everything hoplon raises on purpose derives from :class:`HoplonError`. Input errors also derive from
:class:`ValueError` so that callers who catch the standard type keep working. The CLI maps each class to
a one-line message and an exit code (see :data:`EXIT_CODES`): 0 clean, 1 policy failed or unsafe, 2 error.
"""

from __future__ import annotations

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_POLICY",
    "BudgetExceeded",
    "HoplonError",
    "InputError",
    "ModelLoadError",
    "PolicyViolation",
    "TrustRequiredError",
    "UnsafeArtifactError",
    "UnsupportedFormatError",
]

EXIT_OK = 0
EXIT_POLICY = 1
EXIT_ERROR = 2


class HoplonError(Exception):
    """Base class of every error hoplon raises on purpose."""

    exit_code: int = EXIT_ERROR


class InputError(HoplonError, ValueError):
    """A parameter, file or dataset given by the user is invalid."""


class UnsupportedFormatError(InputError):
    """A file is of a format hoplon cannot read for this purpose."""


class ModelLoadError(InputError):
    """A model file exists but could not be loaded or does not behave like a classifier."""


class UnsafeArtifactError(HoplonError):
    """An artifact would run code when loaded (e.g. a pickle) and was not trusted explicitly."""

    exit_code = EXIT_POLICY


class TrustRequiredError(InputError):
    """A pickle-based file was given to a loader without the explicit ``trust`` switch (exit code 2)."""


class BudgetExceeded(HoplonError):
    """A query, time or size budget was spent. ``partial`` may carry what was done before it ran out."""

    def __init__(self, message: str, *, used: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.used = used
        self.limit = limit


class PolicyViolation(HoplonError):
    """A policy gate failed (e.g. ``robust_accuracy`` under the required floor)."""

    exit_code = EXIT_POLICY
