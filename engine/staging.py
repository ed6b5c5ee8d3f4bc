"""Atomic output: frames go to a sibling `<output>.partial-<pid>` folder that is renamed to
`output` only when every frame is written, so a failed or cancelled bake never leaves a
half-written take where Blender would look for one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

from engine.errors import Cancelled, JobError


def partial_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.partial-{os.getpid()}")


@contextlib.contextmanager
def staged_folder(output: Path) -> Iterator[Path]:
    """Yield the temporary folder; on a clean exit rename it to `output`, on any exception
    (Cancelled included) remove it and re-raise."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JobError(f"cannot create the folder {output.parent}: {exc.strerror or exc}; "
                       "choose an output folder you can write to") from None
    partial = partial_path(output)
    if partial.exists():  # left by an earlier process that had our pid and was killed
        shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
    except OSError as exc:
        raise JobError(f"cannot create {partial}: {exc.strerror or exc}; choose an output "
                       "folder you can write to") from None
    try:
        yield partial
        if os.path.lexists(output):
            raise JobError(f"output folder {output} appeared while baking; bake again into a new "
                           "take folder")
        os.replace(partial, output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def raise_on_sigterm() -> None:
    """Turn SIGTERM (Blender's Cancel, `kill`) into a Cancelled exception in the main thread, so
    the `finally` clean-up above runs instead of the process vanishing mid-write."""
    def handler(signum, frame):
        raise Cancelled(f"stopped by signal {signum}")
    signal.signal(signal.SIGTERM, handler)
