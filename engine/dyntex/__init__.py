"""Dynamic-texture engine (two-stream synthesis): MSOE dynamics network in msoe.py, motion
library in exemplars.py, losses in losses.py, per-region synthesis in synthesis.py; the
motion-first method (`dyntex.method: "advect"`) in motion_field.py and advect.py, and its
optional refiner (`dyntex.refine`: two-stream iterations started from the advected clip) in
refine.py.

`prepare(job, device, progress)` is the job-file entry (engine/runner.py): masks labelled with a
built-in exemplar (water, clouds, grass, waterfall) or a clip path move, `static` masks are
redundant (everything outside the motion masks stays the still) and ignored with a warning
(two-stream), or hold their pixels inside a moving region (advect, which also takes pokes).
"""

from __future__ import annotations


class _Frames:
    """The synthesized clip as the runner iterates it (full resolution, one frame at a time)."""

    def __init__(self, result):
        self.result = result

    def __len__(self) -> int:
        return len(self.result)

    def __iter__(self):
        return self.result.frames()


def prepare(job, device, progress):
    if job.dyntex.method == "advect":
        from engine.dyntex import advect, refine
        return refine.refine(advect.prepare(job, device, progress), job, device, progress)
    from engine import frames as frames_io
    from engine.dyntex import synthesis
    from engine.errors import JobError

    settings = job.dyntex
    weights = synthesis.loss_weights(settings)
    size = min(job.max_size, settings.size) if job.max_size else settings.size
    config = synthesis.SynthesisConfig(frames=job.frames, size=size, loop=job.loop,
                                       iterations=settings.iterations, levels=settings.levels,
                                       optimizer=settings.optimizer, seed=job.seed,
                                       weights=weights)
    config.check()
    still = frames_io.read_image(job.image)
    height, width = still.shape[:2]
    work_w, work_h = synthesis.working_size(width, height, config.size)
    specs = []
    for index, mask in enumerate(job.masks, 1):
        if mask.label == "static":
            progress.warning(f"mask {index} is 'static': outside the motion masks everything "
                             "stays the still anyway, so it is ignored")
            continue
        specs.append((mask.path, mask.label))
    if not specs:
        raise JobError("the job has no motion mask; label a mask water, clouds, grass, "
                       "waterfall or a clip file")
    regions = synthesis.read_regions(specs, width, height, min(work_w, work_h), job.frames,
                                     job.seed, job.loop)
    painting = frames_io.read_image(settings.style) if settings.style else None
    vgg, msoe = synthesis.load_networks(None, None, device)

    def report(done, total, loss, preview):
        extra = {"preview": str(preview)} if preview is not None else {}
        progress.emit("synthesize", done, total, loss=round(loss, 6), **extra)

    preview_dir = job.output.with_name(job.output.name + ".preview")
    try:
        result = synthesis.synthesize(still, regions, config, vgg=vgg, msoe=msoe,
                                      painting=painting, device=device, callback=report,
                                      preview_dir=preview_dir)
    finally:
        import shutil
        shutil.rmtree(preview_dir, ignore_errors=True)
    return _Frames(result)
