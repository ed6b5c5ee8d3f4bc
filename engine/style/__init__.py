"""The style stage: the still takes on a painting's colours and brushwork once, before any engine
moves it, so the style travels with the motion and cannot boil from frame to frame.

    stylize(still, painting, strength)      any still -> the same still, stylized (gatys.py)
    apply_style(job, device, progress)      the job stage: cached, masks, the job the engines run
    check_painting(pixels, path)            a painting the stage can use, or a JobError

Every engine reads its still through the job (engine/runner.py runs this stage first and hands
the engine a job whose `image` is the stylized still), so warp, faces and landscapes all move the
same stylized pixels; nothing engine-specific happens here.
"""

from __future__ import annotations

import numpy as np

from engine import frames
from engine.errors import JobError

# A painting is read at about the working level's pixel count (gatys.StyleConfig.area), so more
# than 8K on a side only costs memory while decoding; such a file is refused with a way out.
MAX_PAINTING_SIDE = 8192
# Fewer pixels than this on the painting's shorter side leave its Grams without brushwork: at
# relu4_1 (1/8 scale) a 16 px painting has 2 x 2 positions.
MIN_PAINTING_SIDE = 16
# Below this spread (sRGB, 0..1) of every channel the painting is one flat colour: there is no
# brushwork to take and its only "style" would be to flatten the still.
FLAT_PAINTING_STD = 2.0 / 255.0


def display_rgb_float(pixels: np.ndarray) -> np.ndarray:
    """float32 sRGB RGB in [0, 1] of any picture the engine reads (grey, RGBA, 16-bit, linear
    EXR): what VGG-19 and the Lab statistics expect. Alpha is dropped here (it is kept by the
    caller), linear data is encoded, HDR values above 1 are clipped."""
    values = frames.to_float(frames.convert(pixels, "PNG16"))
    if values.shape[2] == 4:
        values = values[:, :, :3]
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return np.ascontiguousarray(values, dtype=np.float32)


def from_display_rgb(rgb: np.ndarray, like: np.ndarray) -> np.ndarray:
    """float sRGB RGB -> the sample type, channel count and colour encoding of `like` (its
    alpha kept as it was). A grey still gets the stylized luminance (Rec. 709 weights)."""
    channels = like.shape[2]
    colour = rgb
    if channels == 1:
        colour = (rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32))[:, :, None]
    if like.dtype == np.float32:
        colour = frames.srgb_to_linear(colour)
        out = colour if channels != 4 else np.concatenate([colour, like[:, :, 3:]], axis=2)
        return out.astype(np.float32)
    out = frames.from_float(colour, like.dtype)
    if channels == 4:
        out = np.concatenate([out, like[:, :, 3:]], axis=2)
    return out


def check_painting(pixels: np.ndarray, path) -> None:
    """Refuse a painting that cannot carry a style, saying what to use instead."""
    height, width = pixels.shape[:2]
    if max(width, height) > MAX_PAINTING_SIDE:
        raise JobError(f"the style painting {path} is {width}x{height}, larger than "
                       f"{MAX_PAINTING_SIDE} px on a side; save a copy at most {MAX_PAINTING_SIDE} "
                       "px wide (the style is read at about 500 px anyway) and pick that")
    if min(width, height) < MIN_PAINTING_SIDE:
        raise JobError(f"the style painting {path} is only {width}x{height}; a painting needs at "
                       f"least {MIN_PAINTING_SIDE} px on its shorter side to carry brushwork; "
                       "pick a larger picture of it")
    rgb = display_rgb_float(pixels)
    if float(rgb.reshape(-1, 3).std(axis=0).max()) < FLAT_PAINTING_STD:
        raise JobError(f"the style painting {path} is one flat colour: it has no colours or "
                       "brushwork to take; pick a painting (or set Strength to 0 for no style)")


def read_painting(path) -> np.ndarray:
    """The painting's pixels, checked (check_painting); a missing or unreadable file is a
    JobError that names it."""
    try:
        pixels = frames.read_image(path)
    except JobError as exc:
        raise JobError(f"cannot use the style painting: {exc}; pick a PNG, JPEG, TIFF or EXR "
                       "painting") from None
    check_painting(pixels, path)
    return pixels


def stylize(still: np.ndarray, painting: np.ndarray, strength: float, *, device="cpu",
            progress=None, config=None, region: np.ndarray | None = None) -> np.ndarray:
    """The whole still with the painting's statistics at `strength` (0..1): same shape, sample
    type and alpha as `still`. Strength 0 returns the still itself (not a copy, not a round
    trip). progress: an engine.progress.Progress, told ("style", done, total). region: H x W
    weights of the part that will be kept (style "masks"), whose colours are matched."""
    if not 0.0 <= strength <= 1.0:
        raise JobError(f"style strength must be from 0 to 1 (got {strength})")
    if strength == 0.0:
        return still
    rgb = stylize_display(display_rgb_float(still), display_rgb_float(painting), strength,
                          device=device, progress=progress, config=config, region=region)
    return from_display_rgb(rgb, still)


def stylize_display(rgb: np.ndarray, painting_rgb: np.ndarray, strength: float, *, device="cpu",
                    progress=None, config=None, region: np.ndarray | None = None) -> np.ndarray:
    """float32 sRGB RGB in, the same stylized out (display_rgb_float's terms): the one place that
    loads VGG-19, reports progress and runs the optimisation (gatys.stylize_rgb), for `stylize`
    and for the job's stage (stage.py)."""
    import torch

    from engine.style.gatys import StyleConfig, stylize_rgb
    from engine.vgg import load_vgg19

    config = config or StyleConfig()
    vgg = load_vgg19(device=torch.device(device))

    def report(done, total):
        if progress is not None:
            progress.emit("style", done, total)

    report(0, config.total_evaluations(config.levels))
    return stylize_rgb(rgb, painting_rgb, strength, vgg, config, report, region=region)
