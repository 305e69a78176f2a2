"""Errors that reach a user as one clear line, never a traceback wall."""


def one_line(text, limit: int = 300) -> str:
    """``text`` (an upstream message, often several lines) as one line of at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class StackproofError(Exception):
    """A problem the user can act on. ``str(err)`` is a single line that names
    the bad thing (a field, a file, a component and version, a port)."""


class ConfigError(StackproofError):
    """A target file, release catalog or option is wrong."""


class ComponentError(StackproofError):
    """A platform component failed to build, start or become ready.

    ``log_tail`` holds the last lines of its log, shown under the one-line
    message by the CLI and by the pytest plugin."""

    def __init__(self, message: str, log_tail: str = ""):
        super().__init__(message)
        self.log_tail = log_tail
