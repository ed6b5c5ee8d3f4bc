"""Job -> frames on disk: the part every engine shares (device, staging folder, file names,
progress, disk errors). An engine is a module with

    prepare(job, device, progress) -> an iterable of exactly job.frames frames

where each frame is an H x W x C array in the still's sample type (see engine/frames.py).
`prepare` reads and checks all inputs, so bad input fails before any folder is created.
An engine may instead return an object with `images`, a list of (file name, uint8 RGB picture):
those files are written (PNG) in place of frames - the poke engine's thumbnails for the picker.
"""

from __future__ import annotations

import errno
import importlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine import frames
from engine.errors import JobError
from engine.job import Job
from engine.progress import Progress

ENGINES = {"warp": "engine.warp", "dyntex": "engine.dyntex", "poke": "engine.poke.sample"}
DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def run_job(job: Job, progress: Progress) -> Path:
    from engine.device import resolve_device

    progress.emit("load", 0, 1)
    device = resolve_device(job.device)
    if job.style is not None:
        from engine.style.stage import apply_style

        job = apply_style(job, device, progress)  # every engine moves the stylized still
    engine = importlib.import_module(ENGINES[job.engine])
    clip = engine.prepare(job, device, progress)
    progress.emit("load", 1, 1)

    from engine.staging import staged_folder

    if hasattr(clip, "images"):
        return _write_images(job, clip.images, progress)
    written = 0
    with staged_folder(job.output) as partial:
        # Encoding a PNG (zlib, in C, without the GIL) overlaps with rendering the next frame.
        # One frame in flight at most keeps memory O(one frame); the pool is shut down (and its
        # write finished) before staged_folder cleans up after a failure or a cancel.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-writer") as writer:
            pending = None
            for pixels in clip:
                if pending is not None:
                    _finish(pending, job, progress)
                written += 1
                path = partial / job.frame_name(written)
                pending = (writer.submit(write_frame, path, pixels, job), written, path)
            if pending is not None:
                _finish(pending, job, progress)
        if written != job.frames:
            raise RuntimeError(f"engine {job.engine} made {written} frames, not {job.frames}")
    progress.emit("done", written, job.frames, output=str(job.output), frames=written)
    return job.output


def _write_images(job: Job, images, progress: Progress) -> Path:
    from engine.staging import staged_folder

    with staged_folder(job.output) as partial:
        for index, (name, pixels) in enumerate(images, 1):
            path = partial / name
            write_frame(path, pixels, job, fmt="PNG8")
            progress.emit("thumbnail", index, len(images), preview=str(path))
    names = [name for name, _ in images]
    progress.emit("done", len(images), len(images), output=str(job.output), images=names)
    return job.output


def _finish(pending, job: Job, progress: Progress) -> None:
    future, index, path = pending
    future.result()
    progress.emit("render", index, job.frames, preview=str(path))


def write_frame(path: Path, pixels, job: Job, fmt: str | None = None) -> None:
    try:
        frames.write_image(path, pixels, fmt or job.format)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise JobError(f"disk full while writing frames to {job.output}; free space and "
                           "bake again") from None
        raise JobError(f"cannot write {path}: {exc.strerror or exc}; check that the output "
                       "folder is writable") from None
