"""The small pictures the evaluation's style cases need besides media/ (tools/eval_cases.json):
written into tools/eval_media/ and committed, so nothing here runs during an evaluation.

    meadow_sky.png, meadow_grass.png   motion masks of media/meadow.png (384 x 384, white =
                                       moves): the sky as tools/demo.py masks it (clouds), the
                                       grass below the rock (grass)
    strokes_painting.jpg               the procedural painting of the style bench and tests
                                       (engine/style/bench.py brush_painting) at 384 x 384: short
                                       thick strokes of a night palette swirling over the canvas

Deterministic (fixed seed): re-running rewrites the same pictures.

    python tools/make_eval_media.py
"""

import pathlib

import sys

import cv2
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from engine.style.bench import brush_painting  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "eval_media"
SIZE = 384
# In meadow.png pixels (x right, y down), as tools/demo.py's SKY_MASK and GRASS_MASK.
SKY = [(266, 0), (383, 0), (383, 118), (260, 124), (258, 104), (250, 98), (249, 78), (257, 66),
       (260, 46), (260, 24), (266, 20)]
GRASS = [(0, 110), (60, 150), (130, 200), (240, 228), (383, 228), (383, 383), (0, 383)]
def mask(points) -> np.ndarray:
    picture = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(picture, [np.int32(points)], 255)
    return picture


def main() -> None:
    OUT.mkdir(exist_ok=True)
    cv2.imwrite(str(OUT / "meadow_sky.png"), mask(SKY))
    cv2.imwrite(str(OUT / "meadow_grass.png"), mask(GRASS))
    cv2.imwrite(str(OUT / "strokes_painting.jpg"),
                cv2.cvtColor(brush_painting(SIZE, SIZE), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 90])
    for name in ("meadow_sky.png", "meadow_grass.png", "strokes_painting.jpg"):
        print(f"{OUT.name}/{name}: {(OUT / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
