"""The small pictures the evaluation's style cases need besides media/ (tools/eval_cases.json):
written into tools/eval_media/ and committed, so nothing here runs during an evaluation.

    meadow_sky.png, meadow_grass.png   motion masks of media/meadow.png (384 x 384, white =
                                       moves): the sky as tools/demo.py masks it (clouds), the
                                       grass below the rock (grass)
    strokes_painting.jpg               the procedural painting of the style bench and tests
                                       (engine/style/bench.py brush_painting) at 384 x 384: short
                                       thick strokes of a night palette swirling over the canvas
    landscape_*.png                    motion masks of the landscape cases (issue 15), at each
                                       still's own size: closed polygons as an artist draws them
                                       with grease pencil, following trees, rocks, boats and
                                       hills roughly (LANDSCAPE_MASKS below)

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

# The landscape cases' motion masks (tools/eval_cases.json landscape_*), in the pixels of each
# still (x right, y down). A mask is the polygons in "moves" less those in "holes" (a rock
# standing in the stream).
# Big Buck Bunny's first frame, whole (1280 x 720; media/bigbuckbunny.mp4 frame 1): the sky
# right of the tree and above the far hills; the grass of the sunlit mound and the field right
# of the burrow (the bunny, the burrow, the small rock, the big rocks and the path left out),
# and the grass in front below the path. The mound over the burrow, with its roots, holds.
MEADOW_SKY = [(1068, 0), (1279, 0), (1279, 225), (1250, 228), (1215, 240), (1180, 250),
              (1080, 252), (1076, 236), (1052, 202), (1035, 178), (1036, 134), (1056, 118),
              (1068, 104)]
MEADOW_GRASS = [(540, 205), (608, 250), (675, 292), (733, 318), (790, 334), (798, 350),
                (800, 400), (812, 416), (900, 418), (1020, 424), (1130, 428), (1220, 430),
                (1279, 425), (1279, 719), (1010, 719), (1000, 705), (942, 690), (880, 671),
                (817, 652), (755, 639), (692, 621), (630, 608), (567, 564), (535, 553),
                (528, 480), (590, 450), (660, 448), (662, 395), (600, 395), (525, 420),
                (520, 300), (530, 230)]
MEADOW_FRONT = [(0, 540), (60, 530), (150, 530), (230, 520), (300, 545), (380, 560), (440, 560),
                (461, 590), (567, 602), (630, 633), (692, 652), (755, 677), (817, 695),
                (880, 714), (890, 719), (0, 719)]
# media/landscape_water.jpg (1280 x 720, EveningGlow): the sky down to the ridge of the hills
# and the trees; the lake from the far shore to the boats, round the stone jetty on the right
# (the mooring posts in the water move with it).
WATER_SKY = [(0, 0), (1279, 0), (1279, 165), (1250, 168), (1235, 192), (1190, 203),
             (1140, 216), (1090, 231), (1065, 236), (1030, 233), (1000, 250), (965, 266),
             (940, 266), (880, 263), (800, 262), (720, 262), (670, 257), (640, 258), (600, 256),
             (550, 251), (500, 253), (450, 253), (390, 253), (350, 251), (300, 243), (250, 231),
             (200, 228), (145, 211), (100, 218), (50, 222), (0, 221)]
WATER_LAKE = [(0, 311), (932, 311), (935, 345), (960, 349), (1140, 347), (1150, 351), (1140, 365),
              (1100, 368), (1015, 364), (990, 374), (915, 376), (825, 378), (810, 383),
              (730, 383), (715, 387), (670, 387), (640, 390), (557, 390), (555, 420),
              (575, 470), (560, 520), (545, 500), (530, 430), (495, 395), (410, 395), (405, 440),
              (385, 440), (380, 407), (275, 410), (255, 442), (215, 470), (185, 452), (200, 432),
              (205, 417), (75, 413), (40, 432), (0, 452)]
# media/landscape_waterfall.jpg (1280 x 960, the stream's cascades): the water from the top
# falls down to the front pool, between the rocks of both banks; the dark boulder in the
# middle of the lower cascade and the mossy rock beside it are holes.
WATERFALL = [(668, 78), (760, 72), (820, 82), (868, 85), (882, 140), (900, 148), (870, 180),
             (840, 205), (780, 212), (700, 207), (630, 210), (615, 232), (630, 258), (652, 290),
             (655, 305), (640, 330), (640, 350), (632, 380), (625, 420), (630, 480), (615, 510),
             (605, 530), (605, 590), (585, 615), (578, 640), (575, 690), (640, 700), (700, 700),
             (745, 710), (760, 760), (740, 790), (705, 812), (700, 845), (780, 850), (880, 853),
             (882, 880), (805, 888), (730, 893), (660, 918), (622, 950), (618, 959), (205, 959),
             (200, 880), (60, 860), (45, 830), (150, 815), (250, 790), (262, 720), (200, 705),
             (198, 640), (150, 632), (110, 615), (150, 605), (210, 600), (205, 560), (210, 510),
             (250, 500), (330, 490), (400, 465), (450, 410), (500, 400), (495, 352), (545, 348),
             (545, 318), (470, 305), (425, 298), (425, 290), (468, 285), (470, 250), (525, 238),
             (520, 205), (600, 200), (655, 195), (660, 150)]
WATERFALL_ROCKS = [[(412, 745), (470, 735), (560, 738), (592, 760), (590, 815), (520, 822),
                    (430, 818), (400, 790)],
                   [(600, 722), (660, 715), (700, 725), (705, 790), (680, 805), (615, 800),
                    (600, 770)]]
# media/starry_night.jpg (752 x 600, Van Gogh): the sky inside the canvas' border, round the
# cypress (its two prongs too), down to the hills, the church spire and the dark hill on the
# right.
PAINTING_SKY = [(13, 12), (737, 12), (737, 298), (705, 296), (680, 304), (662, 328), (650, 343),
                (630, 356), (600, 363), (560, 370), (520, 360), (480, 366), (450, 370),
                (434, 383), (430, 370), (422, 370), (418, 386), (380, 395), (330, 408),
                (295, 423), (280, 437), (258, 406), (243, 376), (229, 345), (209, 338),
                (197, 310), (195, 280), (190, 240), (180, 205), (173, 180), (168, 155),
                (165, 105), (163, 60), (157, 46), (152, 46), (147, 80), (144, 130), (146, 168),
                (138, 190), (125, 195), (117, 230), (117, 280), (114, 330), (112, 380),
                (116, 410), (13, 410)]
# media/landscape_sea.jpg (1280 x 1280, Infinite Sea): the sea from just under the horizon
# (row 900) to the bottom.
SEA = [(0, 904), (1279, 904), (1279, 1279), (0, 1279)]
# file -> (still's width, height, polygons that move, holes)
LANDSCAPE_MASKS = {
    "landscape_meadow_sky.png": (1280, 720, [MEADOW_SKY], []),
    "landscape_meadow_grass.png": (1280, 720, [MEADOW_GRASS, MEADOW_FRONT], []),
    "landscape_water_sky.png": (1280, 720, [WATER_SKY], []),
    "landscape_water_lake.png": (1280, 720, [WATER_LAKE], []),
    "landscape_waterfall.png": (1280, 960, [WATERFALL], WATERFALL_ROCKS),
    "landscape_painting_sky.png": (752, 600, [PAINTING_SKY], []),
    "landscape_sea_water.png": (1280, 1280, [SEA], []),
}


def polygon_mask(width: int, height: int, moves, holes=()) -> np.ndarray:
    """White (255) inside the polygons of `moves` and outside those of `holes`."""
    picture = np.zeros((height, width), np.uint8)
    for points in moves:
        cv2.fillPoly(picture, [np.int32(points)], 255)
    for points in holes:
        cv2.fillPoly(picture, [np.int32(points)], 0)
    return picture


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
    for name, (width, height, moves, holes) in LANDSCAPE_MASKS.items():
        cv2.imwrite(str(OUT / name), polygon_mask(width, height, moves, holes))
    for name in ("meadow_sky.png", "meadow_grass.png", "strokes_painting.jpg",
                 *LANDSCAPE_MASKS):
        print(f"{OUT.name}/{name}: {(OUT / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
