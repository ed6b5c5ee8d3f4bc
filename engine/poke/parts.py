"""What the poke engine takes from the face in the still (issue 5): which facial part each poke
drives (snapping its start onto that part), and the automatic background hold.

Both come from MediaPipe (engine/face/, requirements/face.txt). It is part of the engine
install, but an environment made before it was added still bakes: without it, or without a
face in the still, pokes stay where they were drawn and nothing is held automatically, and
the job says so in a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from engine.errors import JobError
from engine.render import smoothstep

# The person mask's soft fringe (0.3-0.8 over the car seat beside the man's shoulder in
# media/face.png) is held still: motion fades in from PERSON_SURE[0] to PERSON_SURE[1], so only
# what the segmenter is sure is the person moves, and the fall-off lies inside the silhouette.
PERSON_SURE = (0.5, 0.8)
# A poke drives a part when it starts within this fraction of the face's size (the diagonal of
# its landmarks' box) from the part; it is then moved onto the part's nearest landmark.
SNAP_SHARE = 0.06


@dataclass
class PokePart:
    index: int                      # 1-based, in the job's order of pokes (pins included)
    part: str | None                # the part it drives, None when no part is near
    start: tuple[float, float]      # where the poke starts after snapping (working pixels)
    pin: bool


def find_face(rgb: np.ndarray, warn: Callable[[str], None]):
    """The largest face of an RGB still (engine.face.parts.FaceParts), or None (with a
    warning saying why)."""
    try:
        from engine.face.landmarks import detect_face
        face = detect_face(rgb)
    except JobError as error:  # mediapipe missing: the job still bakes
        warn(f"facial parts are off: {error}")
        return None
    if face is None:
        warn("no face found in the still: pokes are not snapped to facial parts")
    return face


def snap_pokes(starts: Sequence[tuple[float, float]], pins: Sequence[bool], face,
               share: float = SNAP_SHARE) -> list[PokePart]:
    """Each start (working pixels) with the part it drives; a start near a part moves onto the
    part's nearest landmark, so the model's poke patch lies on the part."""
    from engine.face.parts import snap_to_part

    out = []
    radius = share * face.size() if face is not None else 0.0
    for index, (start, pin) in enumerate(zip(starts, pins), 1):
        part = snap_to_part(start, face, radius) if face is not None else None
        snapped = tuple(float(v) for v in start)
        if part is not None:
            points = face.points[part]
            nearest = points[np.argmin(np.hypot(*(points - np.asarray(start)).T))]
            snapped = (float(nearest[0]), float(nearest[1]))
        out.append(PokePart(index, part, snapped, pin))
    return out


def background_hold(rgb: np.ndarray, static_masks: Sequence[np.ndarray],
                    motion_masks: Sequence[np.ndarray], warn: Callable[[str], None]
                    ) -> np.ndarray | None:
    """[H, W] pin map holding everything but the person still (engine/face/segmentation.py
    rules: static masks always hold, other masks free what they cover), or None when the person
    mask cannot be made."""
    try:
        from engine.face.segmentation import background_pin_map, person_mask
        person = person_mask(rgb)
    except JobError as error:
        warn(f"the background is not held automatically: {error}")
        return None
    if float(person.max()) < 0.5:
        warn("no person found in the still, so the background is not held automatically; "
             "draw a static mask over what must not move")
        return None
    return background_pin_map(smoothstep(person, *PERSON_SURE), static_masks, motion_masks)
