"""Pictures written to disk: one encoder, atomic writes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detimb.errors import DetimbError
from detimb.utils import atomic_write


def save_picture(path: str | Path, picture: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB picture (PNG or JPEG by the suffix), atomically."""
    path = Path(path)

    def write(tmp: str) -> None:
        ok, data = cv2.imencode(path.suffix or ".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        if not ok:
            raise DetimbError(f"cannot encode a picture as {path.suffix}")
        Path(tmp).write_bytes(data.tobytes())

    atomic_write(path, write)
