"""The one exception type users see.

Every error a user can cause (a bad file, a bad spec, an unknown label, a wrong band count) is raised as
:class:`HsisegError` with a message that names the file or field and says what to do. The command line
prints it on one line and exits with code 2.
"""

from __future__ import annotations


class HsisegError(Exception):
    """An error caused by user input: bad files, bad specs, bad options."""


class HsisegWarning(UserWarning):
    """A documented repair of user input (e.g. NaN values set to 0); the message says what was done."""


class OutputExistsError(HsisegError):
    """An output file exists and the caller did not allow replacing it (the CLI names its flag)."""
