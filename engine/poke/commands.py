"""The poke engine's subcommands of `python -m engine` (engine/cli.py adds them).

Parsers only: torch and the networks are imported when a command runs, so `python -m engine
check` can still say what is missing from a broken install.
"""

from __future__ import annotations


def add_commands(commands) -> None:
    _add_train(commands)
    _add_train_mesh(commands)
    _add_sample(commands)
    _add_evaluate(commands)


def _train(args, progress) -> int:
    from engine.poke.train import run

    return run(args, progress)


def _train_mesh(args, progress) -> int:
    from engine.poke.mesh.train import run

    return run(args, progress)


def _add_train_mesh(commands) -> None:
    parser = commands.add_parser(
        "train-mesh-poke", help="train the face-mesh poke model (identity-free face motion) "
                                "from face clips of anyone")
    _mesh_arguments(parser)
    parser.set_defaults(command=_train_mesh)


def _mesh_arguments(parser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO",
                        help="face clips (any person; more clips, more real expressions)")
    parser.add_argument("--out", required=True, help="the model file (.safetensors)")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--clips", type=int, default=60000,
                        help="training clips drawn once (pokes are redrawn at every pass)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--codes", type=int, default=16)
    parser.add_argument("--code-noise", type=float, default=0.05,
                        help="std of the noise added to the (whitened) codes in training")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--held-out", type=float, default=0.2,
                        help="last fraction of each clip kept out of training")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)


def _add_train(commands) -> None:
    parser = commands.add_parser(
        "train-poke", help="train a poke model (iPOKE) from video files of one person")
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (OpenCV reads)")
    parser.add_argument("--out", required=True, help="the model file to write (.safetensors)")
    parser.add_argument("--size", default="small", choices=["tiny", "small", "large"],
                        help="model size preset (small: laptop CPU; large: GPU)")
    parser.add_argument("--space", default="pixels", choices=["pixels", "motion"],
                        help="what the video autoencoder encodes: pixels (iPOKE) or the "
                             "clip's motion, rendered by warping the still (sharp at any "
                             "resolution)")
    parser.add_argument("--parts", action="store_true",
                        help="facial parts (MediaPipe): the part layout joins the image "
                             "condition and half the pokes are drawn inside one eye, brow or "
                             "the mouth, from the frame where it moves most")
    parser.add_argument("--stages", default="all", help="all, or a comma list of "
                        "video,codes,cinn (the others are read from the run folder)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="wall-clock budget shared by the stages")
    parser.add_argument("--steps", action="append", metavar="STAGE=N",
                        help="fixed step count for a stage (overrides the budget)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--stride", type=int, default=1, help="frame step inside a clip")
    parser.add_argument("--face-crop", action="store_true",
                        help="crop a square that follows the face (else a centre square)")
    parser.add_argument("--held-out", type=float, default=0.2,
                        help="last fraction of each video kept for validation")
    parser.add_argument("--perceptual-weight", type=float, default=10.0,
                        help="VGG-19 perceptual loss weight (0: no VGG weights needed)")
    parser.add_argument("--epoch-batches", type=int, default=0)
    parser.add_argument("--stage-share", default="0.5,0.15,0.35", metavar="V,C,I",
                        help="fractions of --max-minutes for the video, codes and cINN stages")
    parser.add_argument("--adversarial-after", type=float, default=0.3,
                        help="fraction of the video stage trained before the discriminators "
                             "join")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast for the video and code stages (faster on CPUs "
                             "with AMX and on GPUs; the cINN stays float32)")
    parser.add_argument("--run-dir", help="folder for resumable state (default: OUT_run/)")
    parser.add_argument("--restart", action="store_true",
                        help="ignore earlier state in the run folder")
    parser.add_argument("--cache-dir", help="decoded clips are cached here")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(command=_train)


def _numbers(text: str, count: int, usage: str) -> tuple[float, ...]:
    import argparse
    import math

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{usage}, got '{text}'")
    return values


def _poke_argument(text: str) -> tuple[float, float, float, float]:
    return _numbers(text, 4, "--poke takes X,Y,DX,DY (four numbers, still pixels, y down)")


def _pin_argument(text: str) -> tuple[float, float]:
    return _numbers(text, 2, "--pin takes X,Y (two numbers, still pixels, y down)")


def _sample(args, progress) -> int:
    from engine.poke.sample import run_command as run

    return run(args, progress)


def _add_sample(commands) -> None:
    parser = commands.add_parser(
        "sample-poke", help="K clips of a poke model for a still and pokes, with a contact "
                            "sheet (same seed, same clips)")
    parser.add_argument("--model", required=True, help="poke model (.safetensors)")
    parser.add_argument("--image", required=True, help="the still (PNG, JPEG, TIFF, EXR)")
    parser.add_argument("--poke", action="append", required=True, type=_poke_argument,
                        metavar="X,Y,DX,DY", help="start (x, y) and drag (dx, dy) in the "
                        "still's pixels, y down; repeat for several pokes")
    parser.add_argument("--pin", action="append", default=[], type=_pin_argument,
                        metavar="X,Y", help="a point that must not move (still pixels); "
                        "motion-space models hold it exactly, repeat for several")
    parser.add_argument("--no-guide", action="store_true",
                        help="motion-space models: keep the raw sample (pokes not landed "
                             "exactly, pins not held)")
    parser.add_argument("--samples", type=int, default=4, help="clips to draw (K)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="noise scale (1: as trained; lower: tamer motion)")
    parser.add_argument("--frames", type=int, default=0,
                        help="frames per clip at full resolution (default: the model's 11)")
    parser.add_argument("--size", type=int, choices=[0, 64], default=0,
                        help="64: write the model's raw 64x64 clips instead of full resolution")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads")
    parser.add_argument("--out", required=True, help="folder to create")
    parser.set_defaults(command=_sample)


def _evaluate(args, progress) -> int:
    from engine.poke.evaluate import run

    return run(args, progress)


def _add_evaluate(commands) -> None:
    parser = commands.add_parser(
        "evaluate-poke", help="held-out numbers of a poke model (its model card): Video-AE "
                              "PSNR/SSIM, cINN bits/dim, poke following, diversity")
    parser.add_argument("videos", nargs="+", metavar="VIDEO",
                        help="the videos it was trained on (their last 20 %% is held out)")
    parser.add_argument("--model", required=True, help="poke model (.safetensors)")
    parser.add_argument("--samples", type=int, default=8, help="samples per held-out clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", type=float, default=None,
                        help="held-out fraction (default: the one the model was trained with)")
    parser.add_argument("--max-clips", type=int, default=0,
                        help="evaluate at most this many held-out clips (0: all)")
    parser.add_argument("--cache-dir", help="decoded clips are cached here")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads")
    parser.set_defaults(command=_evaluate)
