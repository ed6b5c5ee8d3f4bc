"""The small pictures the evaluation's style cases need besides media/ (tools/eval_cases.json):
written into tools/eval_media/ and committed, so nothing here runs during an evaluation.

    meadow_sky.png, meadow_grass.png   motion masks of media/meadow.png (384 x 384, white =
                                       moves): the sky as tools/demo.py masks it (clouds), the
                                       grass below the rock (grass)
    strokes_painting.jpg               a procedural painting: a strong six-colour palette laid
                                       in short, thick, oriented strokes that swirl over the
                                       canvas, so its brushwork has a direction the stills lack

Deterministic (fixed seed): re-running rewrites the same pictures.

    python tools/make_eval_media.py
"""

import pathlib

import cv2
import numpy as np

OUT = pathlib.Path(__file__).resolve().parent / "eval_media"
SIZE = 384
# In meadow.png pixels (x right, y down), as tools/demo.py's SKY_MASK and GRASS_MASK.
SKY = [(266, 0), (383, 0), (383, 118), (260, 124), (258, 104), (250, 98), (249, 78), (257, 66),
       (260, 46), (260, 24), (266, 20)]
GRASS = [(0, 110), (60, 150), (130, 200), (240, 228), (383, 228), (383, 383), (0, 383)]
# BGR: ultramarine, cobalt, cadmium yellow, vermilion, viridian, titanium white
PALETTE = np.float32([[140, 40, 20], [200, 110, 30], [20, 200, 250], [30, 60, 220],
                      [110, 130, 20], [235, 240, 245]])


def mask(points) -> np.ndarray:
    picture = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(picture, [np.int32(points)], 255)
    return picture


def painting(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    # which palette colour dominates where: smooth random fields, one per colour
    fields = np.stack([cv2.GaussianBlur(rng.random((SIZE, SIZE), np.float32), (0, 0), 40)
                       for _ in PALETTE])
    choice = fields.argmax(axis=0)
    canvas = PALETTE[choice] * 0.8
    # stroke direction: a swirl plus a diagonal drift (radians)
    direction = (0.9 * np.sin(xs / 45.0) + 0.9 * np.cos(ys / 60.0) + np.pi / 4)
    for _ in range(5200):
        x, y = rng.uniform(0, SIZE, 2)
        colour = PALETTE[choice[int(y), int(x)]] if rng.random() < 0.8 \
            else PALETTE[rng.integers(len(PALETTE))]
        colour = np.clip(colour * rng.uniform(0.75, 1.15) + rng.normal(0, 12, 3), 0, 255)
        angle = direction[int(y), int(x)] + rng.normal(0, 0.12)
        length = rng.uniform(10, 22)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        cv2.line(canvas, (int(x - dx), int(y - dy)), (int(x + dx), int(y + dy)),
                 tuple(float(c) for c in colour), int(rng.integers(3, 7)), cv2.LINE_AA)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    cv2.imwrite(str(OUT / "meadow_sky.png"), mask(SKY))
    cv2.imwrite(str(OUT / "meadow_grass.png"), mask(GRASS))
    cv2.imwrite(str(OUT / "strokes_painting.jpg"), painting(), [cv2.IMWRITE_JPEG_QUALITY, 90])
    for name in ("meadow_sky.png", "meadow_grass.png", "strokes_painting.jpg"):
        print(f"{OUT.name}/{name}: {(OUT / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
