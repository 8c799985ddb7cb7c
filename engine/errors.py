"""Exceptions for user mistakes; the CLI prints them as one line and exits with code 2."""
from __future__ import annotations


class CimlTerError(Exception):
    """A problem the user can fix (bad input, bad config, missing device); not a bug."""


class ConfigError(CimlTerError):
    """A configuration file or value is invalid."""


class InputError(CimlTerError):
    """An input file or dataset breaks the data contract."""


class DeviceError(CimlTerError):
    """The requested device (e.g. a CUDA GPU) is not available."""


class Interrupted(BaseException):
    """Ctrl-C (SIGINT), as the CLI raises it and as a worker pool passes on a worker's
    KeyboardInterrupt: not an Exception, so that nothing on the way swallows it, and not a
    KeyboardInterrupt, which typer would turn into a silent exit."""
