"""Helpers for the engine tests: synthetic stills, job folders, running `python -m engine`.

Everything a test needs is generated here; no media files. Subprocess runs cost an interpreter
start (and ~2 s of `import torch` when the command gets that far), so most checks run in-process
and a few go through the real command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine import frames  # noqa: E402


def tiny_poke_model(space: str = "pixels"):
    """An untrained `tiny` poke model whose cINN ActNorms were initialised by one
    training-mode forward on random data, as training's first batch does."""
    import torch

    from engine.poke.model import PokeModel, PokeModelConfig

    torch.manual_seed(0)
    model = PokeModel(PokeModelConfig.preset_named("tiny", space=space))
    cinn = model.cinn.config
    model.cinn.train()
    with torch.no_grad():
        model.cinn(torch.randn(4, cinn.z_channels, cinn.z_size, cinn.z_size),
                   torch.randn(4, cinn.cond_channels, cinn.z_size, cinn.z_size))
    return model.eval()


def tiny_dyntex_networks():
    """(VGG-19, MSOE) for dyntex tests: VGG with random He-scaled weights (activations O(1)
    through the layers) and an untrained MSOE, both frozen; the properties tested hold for any
    fixed networks, and nothing is read from disk."""
    import torch

    from engine import vgg
    from engine.dyntex.msoe import MsoeNet

    torch.manual_seed(0)
    net = vgg.Vgg19Features()
    for name in vgg.CONVS:
        conv = getattr(net, name)
        torch.nn.init.normal_(conv.weight, std=(2.0 / (9 * conv.in_channels)) ** 0.5)
        torch.nn.init.zeros_(conv.bias)
    msoe = MsoeNet(decoder=False)
    return net.requires_grad_(False).eval(), msoe.requires_grad_(False).eval()


def texture(height: int, width: int, channels: int = 3, dtype=np.uint8, seed: int = 0):
    """A smooth random picture (blurred noise): every pixel differs from its neighbours a little,
    so any motion changes pixel values, and resampling has something to be wrong about."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, channels), dtype=np.float32)
    if min(height, width) > 4:
        noise = cv2.GaussianBlur(noise, (0, 0), 1.5).reshape(height, width, channels)
        noise = (noise - noise.min()) / max(float(noise.max() - noise.min()), 1e-6)
    if channels == 4:
        noise[:, :, 3] = 1.0
    return frames.from_float(noise, dtype)


def save(path: Path, pixels: np.ndarray, fmt: str = "PNG8") -> Path:
    """Write pixels as they are (no sample conversion) so the test controls the bit depth."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "EXR":
        from engine import exr
        exr.write(path, pixels)
        return path
    import cv2
    samples = pixels
    if pixels.shape[2] == 3:
        samples = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    elif pixels.shape[2] == 4:
        samples = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(".png", samples)
    assert ok
    buffer.tofile(path)
    return path


def write_job(folder: Path, still: np.ndarray | None = None, mask_images=(), **fields) -> Path:
    """job.json (+ still.png and masks) in folder; fields override the defaults below."""
    folder.mkdir(parents=True, exist_ok=True)
    if still is not None:
        save(folder / "still.png", still)
    mask_entries = []
    for index, mask in enumerate(mask_images):
        name = f"mask_{index:03d}.png"
        save(folder / name, mask[:, :, None] if mask.ndim == 2 else mask)
        mask_entries.append({"path": name, "label": "static"})
    job = {"version": 1, "engine": "warp", "image": "still.png",
           "output": str(folder / "out" / "take_001"), "frames": 4, "fps": 24, "seed": 0,
           "loop": False, "easing": "ease_in_out", "format": "PNG8", "max_size": 0,
           "device": "cpu", "pokes": [], "masks": mask_entries,
           "warp": {"falloff": 0.0, "feather": 0.0}}
    job.update(fields)
    path = folder / "job.json"
    path.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    return path


def engine_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", *args]


def engine_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("STILLMOTION_DEBUG", None)
    return env


def run_engine(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(engine_command(*args), cwd=REPO, env=engine_env(), capture_output=True,
                          text=True, timeout=timeout)


def terminate_when(ready, *args: str, env: dict | None = None, check=None
                   ) -> subprocess.CompletedProcess:
    """Run `python -m engine ARGS`, send SIGTERM once `ready(record)` holds for a progress line
    (after calling check(), when given, while the engine is still running), and return what it
    printed: Cancel as the add-on does it."""
    process = subprocess.Popen(engine_command(*args), cwd=REPO, env=env or engine_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if line.startswith("{") and ready(json.loads(line)):
                break
        if check is not None:
            check()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module (pytestmark = pytest.mark.usefixtures(...)): small
    tensors gain nothing from threads and lose a lot to a busy machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def keep_sigterm():
    """In-process `run` installs a SIGTERM handler; give pytest its own back afterwards."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)
