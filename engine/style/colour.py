"""Colour statistics transfer in Lab (Reinhard et al. 2001): the painting's palette, cheaply.

Each Lab channel of the picture is moved to the painting's mean and standard deviation, by a
share `strength` of the way. It runs per pixel, so it is exact at full resolution; the Gram
optimisation (gatys.py) starts from it and only has to add what a palette cannot: brushwork.
"""

from __future__ import annotations

import cv2
import numpy as np

# Below this standard deviation (Lab units, L in 0..100) a channel is flat: scaling it up to the
# painting's spread would amplify noise and banding, so only its mean moves.
FLAT_STD = 0.5


def lab_statistics(rgb: np.ndarray, weights: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per Lab channel of float RGB in [0, 1], optionally weighted per pixel."""
    lab = cv2.cvtColor(np.clip(rgb, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2Lab)
    flat = lab.reshape(-1, 3).astype(np.float64)
    if weights is None:
        mean = flat.mean(axis=0)
        std = flat.std(axis=0)
    else:
        w = weights.reshape(-1).astype(np.float64)
        w = w / w.sum()
        mean = (flat * w[:, None]).sum(axis=0)
        std = np.sqrt(((flat - mean) ** 2 * w[:, None]).sum(axis=0))
    return mean, std


def transfer_colour(rgb: np.ndarray, painting_stats: tuple[np.ndarray, np.ndarray],
                    strength: float, picture_stats: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> np.ndarray:
    """float RGB [0, 1] -> float RGB [0, 1] whose Lab mean/std lie `strength` of the way from its
    own to the painting's. picture_stats: the statistics to move from (default: rgb's own), so
    a low-resolution copy and the full-resolution picture get the same per-channel mapping."""
    mean, std = picture_stats if picture_stats is not None else lab_statistics(rgb)
    target_mean, target_std = painting_stats
    goal_mean = mean + strength * (target_mean - mean)
    goal_std = std + strength * (target_std - std)
    gain = np.where(std > FLAT_STD, goal_std / np.maximum(std, FLAT_STD), 1.0)
    lab = cv2.cvtColor(np.clip(rgb, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2Lab)
    lab = (lab - mean.astype(np.float32)) * gain.astype(np.float32) + goal_mean.astype(np.float32)
    # Lab's gamut is larger than sRGB's: clip L and let the conversion clip the rest.
    lab[..., 0] = np.clip(lab[..., 0], 0.0, 100.0)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)
