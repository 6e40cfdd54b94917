"""Exceptions that carry a user-facing message; the CLI maps them to exit codes."""


class AltruismError(Exception):
    """Any failure with a message fit to show a user (CLI exit code 1)."""

    exit_code = 1


class BadInput(AltruismError):
    """The user's input (data, parameter, path, request) is invalid (CLI exit code 2)."""

    exit_code = 2


class NotFound(BadInput):
    """A version, alias or file named by the user does not exist."""


class IntegrityError(AltruismError):
    """A stored artifact does not match what the registry recorded."""


class DamagedRecord(IntegrityError, ValueError):
    """Stored results of a version (packed predictions, curves) are damaged (a ValueError
    too, as unpacking raised before)."""


class BuildFailed(AltruismError):
    """A build ran and failed; the version is marked failed with the reason."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class BuildCancelled(BuildFailed):
    """A build was cancelled by a user."""
