"""How far along its path every poke is at each frame: tau per frame, 0 = the still.

Frame 1 is always tau = 0, so the first frame is the still, bit for bit.
- ease_in_out: (1 - cos(pi t)) / 2 over t = 0 .. 1, frame N at tau = 1 (the poke's end).
- linear: tau = t.
- loop: (1 - cos(2 pi k / N)) / 2 for frame k + 1, k = 0 .. N-1: out to the end and back along
  the same path, peaking mid-clip (tau = 1 exactly when N is even), and frame N + 1 would be
  frame 1 again, so the clip repeats without a seam. Easing is ignored (the profile already
  starts and ends at rest).
"""

from __future__ import annotations

import math


def frame_times(frames: int, easing: str = "ease_in_out", loop: bool = False) -> list[float]:
    if frames < 2:
        raise ValueError("a clip needs at least 2 frames")
    if loop:
        # min(k, N - k) makes the way back bit-identical to the way out (cos is only symmetric
        # up to round-off).
        return [math.sin(math.pi * min(k, frames - k) / frames) ** 2 for k in range(frames)]
    times = []
    for k in range(frames):
        t = k / (frames - 1)
        times.append(t if easing == "linear" else 0.5 - 0.5 * math.cos(math.pi * t))
    times[0], times[-1] = 0.0, 1.0  # exact ends, whatever the round-off
    return times
