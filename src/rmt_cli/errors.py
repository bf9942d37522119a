"""Errors a user can cause, each reported as one line with a fix and a distinct exit code."""


class RmtError(Exception):
    """Base: the message is shown to the user as one line, without a traceback."""

    exit_code = 1


class UsageError(RmtError):
    """Bad options or configuration, detected before any compute (exit code 2)."""

    exit_code = 2


class RuntimeFailure(RmtError):
    """Something went wrong while running: missing files, bad checkpoint, diverged loss (exit code 1)."""

    exit_code = 1


class Interrupted(RmtError):
    """Stopped on request (Ctrl-C, SIGTERM) after saving; the same command resumes (exit code 130)."""

    exit_code = 130
