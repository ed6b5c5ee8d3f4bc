"""The person in a still as a soft mask, and the automatic background pin built from it.

Poking a face must not move the wall behind it (the face study's second finding). The person
mask comes from MediaPipe's selfie-segmentation model, shipped in the mediapipe wheel
(requirements/face.txt); everything that is not the person is pinned, unless the artist says
otherwise with masks:
- a static mask always wins: what it covers is pinned, person or not;
- a motion mask (any other label: water, clouds, ...) frees what it covers from the automatic
  background pin, so a background the artist wants moving moves.
The result is a pin map in the warp renderer's convention: 1 = must not move, 0 = free.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from engine.face.landmarks import import_mediapipe, shrink, to_rgb8

# The model sees 256 x 256 whatever the still's size: segment a copy this large and scale the
# mask back instead of resampling a 4K still inside MediaPipe.
SEGMENT_LONG_SIDE = 512


def person_mask(image: np.ndarray) -> np.ndarray:
    """[H, W] float32 in [0, 1]: how much each pixel of the RGB still (H x W x 3, float in
    [0, 1] or uint8) belongs to a person."""
    _, selfie_segmentation = import_mediapipe()
    rgb = to_rgb8(image)
    height, width = rgb.shape[:2]
    small = shrink(rgb, SEGMENT_LONG_SIDE)
    # Built per still (a few ms next to the model's run): no graph outlives the call.
    with selfie_segmentation.SelfieSegmentation(model_selection=0) as model:
        mask = model.process(small).segmentation_mask
    mask = np.asarray(mask, np.float32)
    if mask.shape != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(mask, 0.0, 1.0)


def _union(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray | None:
    union = None
    for mask in masks:
        mask = np.asarray(mask, np.float32)
        if mask.shape != shape:
            raise ValueError(f"mask of shape {mask.shape} for a still of {shape}")
        union = mask.copy() if union is None else np.maximum(union, mask, out=union)
    return None if union is None else np.clip(union, 0.0, 1.0, out=union)


def background_pin_map(person: np.ndarray, static_masks: Sequence[np.ndarray] = (),
                       motion_masks: Sequence[np.ndarray] = ()) -> np.ndarray:
    """[H, W] float32 pin map (1 = must not move) from a person mask and the artist's masks,
    all [H, W] in [0, 1]: the background (1 - person) is pinned, motion masks unpin what they
    cover, static masks pin what they cover whatever else says."""
    person = np.asarray(person, np.float32)
    pin = 1.0 - np.clip(person, 0.0, 1.0)
    moving = _union(motion_masks, person.shape)
    if moving is not None:
        pin *= 1.0 - moving
    static = _union(static_masks, person.shape)
    if static is not None:
        np.maximum(pin, static, out=pin)
    return pin
