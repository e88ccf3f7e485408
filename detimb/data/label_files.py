"""Label files read as text, with a named error for what is not one: the converters' label
files and class lists, and the tiler's GeoJSON or COCO labels share this one reader."""

from __future__ import annotations

from pathlib import Path

from detimb.errors import DatasetError


def read_label_text(path: Path, fix: str = "") -> str:
    """A label file's text: UTF-8 (with or without a byte-order mark), else a named error
    (missing, a folder, unreadable, not UTF-8), ``fix`` appended to it."""
    tail = f" {fix}" if fix else ""
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: label file not found.{tail}") from err
    except IsADirectoryError as err:
        raise DatasetError(f"{path}: is a folder, not a label file.{tail}") from err
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read ({err}).{tail}") from err
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text (byte {err.start}: {data[err.start:err.start + 1]!r})."
                           f"{tail or ' Fix: save it as UTF-8'}") from err
