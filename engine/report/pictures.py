"""The report's pictures, uint8 BGR arrays (cv2.imencode writes them):

  case_picture       the still with the moving region (yellow outline), the pokes (red arrows),
                     their measuring patches (green) and pins (cyan)
  sheet              contact sheet of a case x engine: a row per sample, frames evenly spaced
                     (the still's frame 1 first, the last frame last) cropped around the
                     moving region, and |last - still| x 4 of the whole frame
  histogram_picture  flow magnitude and direction histograms, inside (orange) and outside
                     (blue) the moving region
  style_sheet        a case with a style: a row per engine of the still, the painting, the
                     stylized still and frames of the stylized bake (whole frames)
"""

from __future__ import annotations

import cv2
import numpy as np

from engine.metrics import MAGNITUDE_RANGE
from engine.preview import contact_sheet
from engine.report.stills import Scene

CASE_WIDTH = 384
THUMB_WIDTH = 176
SHEET_FRAMES = 6
SHEET_SAMPLES = 4
STYLE_FRAMES = 4
DIFFERENCE_GAIN = 4
INSIDE, OUTSIDE = (0, 140, 255), (255, 140, 0)  # BGR: orange, blue


def case_picture(scene: Scene) -> np.ndarray:
    height, width = scene.still.shape[:2]
    factor = CASE_WIDTH / width
    size = (CASE_WIDTH, max(1, round(height * factor)))
    picture = cv2.resize(cv2.cvtColor(scene.still, cv2.COLOR_RGB2BGR), size,
                         interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    region = cv2.resize(scene.region.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(picture, contours, -1, (0, 230, 255), 1, cv2.LINE_AA)

    def at(x, y):
        return int(round(x * factor)), int(round(y * factor))

    for x0, y0, x1, y1 in scene.patches:
        cv2.rectangle(picture, at(x0, y0), at(x1, y1), (0, 220, 0), 1)
    for x, y, radius in scene.pins:
        cv2.circle(picture, at(x, y), max(2, round(radius * factor)), (255, 255, 0), 1,
                   cv2.LINE_AA)
    for x, y, dx, dy in scene.pokes:
        cv2.arrowedLine(picture, at(x, y), at(x + dx, y + dy), (0, 0, 0), 3, cv2.LINE_AA,
                        tipLength=0.3)
        cv2.arrowedLine(picture, at(x, y), at(x + dx, y + dy), (40, 40, 255), 1, cv2.LINE_AA,
                        tipLength=0.3)
    return picture


def sheet(clips: list[list[np.ndarray]], still: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Frames cropped to the moving region (padded), where the motion is; the difference
    picture is of the whole frame, where any leakage shows."""
    count = len(clips[0])
    chosen = sorted({int(v) for v in np.linspace(0, count - 1, min(SHEET_FRAMES, count))
                     .round()})
    x0, y0, x1, y1 = _around(region)
    cells = []
    for clip in clips[:SHEET_SAMPLES]:
        for index in chosen:
            cells.append((index + 1, _thumb(clip[index][y0:y1, x0:x1])))
        change = np.abs(clip[-1].astype(np.int16) - still.astype(np.int16)) * DIFFERENCE_GAIN
        change = _thumb(np.clip(change, 0, 255).astype(np.uint8))
        cell = np.zeros_like(cells[-1][1])  # the whole frame, fitted into a crop-sized cell
        scale = min(cell.shape[0] / change.shape[0], cell.shape[1] / change.shape[1])
        change = cv2.resize(change, (max(1, int(change.shape[1] * scale)),
                                     max(1, int(change.shape[0] * scale))),
                            interpolation=cv2.INTER_AREA)
        cell[:change.shape[0], :change.shape[1]] = change
        cells.append((f"diff x{DIFFERENCE_GAIN}", cell))
    return contact_sheet(cells, columns=len(chosen) + 1)


def style_sheet(still: np.ndarray, painting: np.ndarray,
                rows: list[tuple[str, np.ndarray, list[np.ndarray]]]) -> np.ndarray:
    """rows: (engine label, the stylized still it moved, the frames of its first stylized
    clip). Every cell is a whole picture; the painting is fitted into a cell of the still's
    shape (letterboxed), frames are evenly spaced from the first to the last."""
    cells = []
    for label, styled, frames in rows:
        count = len(frames)
        chosen = sorted({int(v) for v in np.linspace(0, count - 1, min(STYLE_FRAMES, count))
                         .round()})
        still_cell = _thumb(still)
        cells += [("still", still_cell), ("painting", _fitted(painting, still_cell.shape)),
                  (f"stylized ({label})", _thumb(styled))]
        cells += [(f"frame {index + 1}", _thumb(frames[index])) for index in chosen]
    return contact_sheet(cells, columns=len(cells) // len(rows))


def histogram_picture(histograms: dict) -> np.ndarray:
    inside, outside = histograms["inside"], histograms["outside"]
    bins = len(inside["direction"])
    quarter = bins // 4
    magnitude = _panel("flow magnitude (px/frame)", inside["magnitude"], outside["magnitude"],
                       {0: "0", len(inside["magnitude"]) // 2: f"{MAGNITUDE_RANGE / 4:g}",
                        len(inside["magnitude"]) - 1: f"{MAGNITUDE_RANGE:g}+"})
    # bin i is centred on the angle -pi + 2 pi i / bins, image coordinates (y down)
    direction = _panel("flow direction (weighted)", inside["direction"], outside["direction"],
                       {0: "left", quarter: "up", 2 * quarter: "right", 3 * quarter: "down"})
    legend = np.full((22, magnitude.shape[1] * 2, 3), 255, np.uint8)
    _text(legend, "inside the moving region", (8, 15), INSIDE)
    _text(legend, "outside", (250, 15), OUTSIDE)
    return np.vstack([legend, np.hstack([magnitude, direction])])


# --------------------------------------------------------------------------------------------


def _around(region: np.ndarray, pad: float = 0.3) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the region's bounding box, grown by `pad` of its size each side."""
    rows, columns = np.nonzero(region)
    height, width = region.shape
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    grow_y, grow_x = int(pad * (y1 - y0)), int(pad * (x1 - x0))
    return (max(0, x0 - grow_x), max(0, y0 - grow_y), min(width, x1 + grow_x),
            min(height, y1 + grow_y))


def _thumb(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
    interpolation = cv2.INTER_AREA if width > THUMB_WIDTH else cv2.INTER_CUBIC
    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), size, interpolation=interpolation)


def _fitted(image: np.ndarray, shape) -> np.ndarray:
    """An RGB picture of any size scaled into a BGR cell of `shape`, centred on dark grey."""
    cell = np.full(shape, 32, np.uint8)
    scale = min(shape[0] / image.shape[0], shape[1] / image.shape[1])
    width = max(1, int(image.shape[1] * scale))
    height = max(1, int(image.shape[0] * scale))
    picture = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), (width, height),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    y, x = (shape[0] - height) // 2, (shape[1] - width) // 2
    cell[y:y + height, x:x + width] = picture
    return cell


def _panel(title: str, first, second, ticks: dict[int, str], width: int = 320,
           height: int = 180) -> np.ndarray:
    panel = np.full((height, width, 3), 255, np.uint8)
    left, top, bottom = 10, 24, height - 22
    bins = len(first)
    step = (width - 2 * left) / bins
    peak = max(max(first, default=0), max(second, default=0)) or 1.0
    for index, (a, b) in enumerate(zip(first, second)):
        x = left + index * step
        for offset, value, colour in ((0.1, a, INSIDE), (0.5, b, OUTSIDE)):
            bar = int(round((bottom - top) * value / peak))
            x0 = int(round(x + offset * step))
            cv2.rectangle(panel, (x0, bottom - bar), (int(round(x0 + 0.4 * step)), bottom),
                          colour, -1)
    cv2.line(panel, (left, bottom), (width - left, bottom), (0, 0, 0), 1)
    for index, label in ticks.items():
        _text(panel, label, (int(left + index * step), bottom + 15), (0, 0, 0))
    _text(panel, title, (left, 16), (0, 0, 0))
    return panel


def _text(image: np.ndarray, text: str, origin: tuple[int, int], colour) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, 1, cv2.LINE_AA)
