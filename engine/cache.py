"""The engine's user cache: converted weights (vgg19.safetensors) and stylized stills (style/).

$STILLMOTION_CACHE when set (tests and benches point it at a temporary folder), else
~/.cache/stillmotion. Everything in it can be made again from the inputs; deleting it only
costs time.
"""

from __future__ import annotations

import os
from pathlib import Path


def user_cache() -> Path:
    return Path(os.environ.get("STILLMOTION_CACHE") or Path.home() / ".cache" / "stillmotion")
