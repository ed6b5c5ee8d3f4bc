"""Errors the engine reports to the artist, as opposed to bugs.

A JobError is a problem with the job or its inputs (or the machine: disk full) that the artist
can fix; its message is one line that says what is wrong and what to do next. The command line
turns it into exit status 2; anything else is a crash (exit status 1).
"""


class JobError(Exception):
    """Bad job, bad input or an environment problem the artist can fix. Exit status 2."""


class Cancelled(BaseException):
    """The process was asked to stop (SIGTERM). A BaseException so that no `except Exception`
    on the way up swallows it; the clean-up in `finally` blocks still runs."""
