"""Job -> frames on disk: the part every engine shares (device, staging folder, file names,
progress, disk errors). An engine is a module with

    prepare(job, device, progress) -> an iterable of exactly job.frames frames

where each frame is an H x W x C array in the still's sample type (see engine/frames.py).
`prepare` reads and checks all inputs, so bad input fails before any folder is created.
"""

from __future__ import annotations

import errno
import importlib
from pathlib import Path

from engine import frames
from engine.errors import JobError
from engine.job import Job
from engine.progress import Progress

ENGINES = {"warp": "engine.warp"}
DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def run_job(job: Job, progress: Progress) -> Path:
    from engine.device import resolve_device

    progress.emit("load", 0, 1)
    device = resolve_device(job.device)
    engine = importlib.import_module(ENGINES[job.engine])
    clip = engine.prepare(job, device, progress)
    progress.emit("load", 1, 1)

    from engine.staging import staged_folder

    written = 0
    with staged_folder(job.output) as partial:
        for pixels in clip:
            written += 1
            path = partial / job.frame_name(written)
            write_frame(path, pixels, job)
            progress.emit("render", written, job.frames, preview=str(path))
        if written != job.frames:
            raise RuntimeError(f"engine {job.engine} made {written} frames, not {job.frames}")
    progress.emit("done", written, job.frames, output=str(job.output), frames=written)
    return job.output


def write_frame(path: Path, pixels, job: Job) -> None:
    try:
        frames.write_image(path, pixels, job.format)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise JobError(f"disk full while writing frames to {job.output}; free space and "
                           "bake again") from None
        raise JobError(f"cannot write {path}: {exc.strerror or exc}; check that the output "
                       "folder is writable") from None
