"""Every image read once before training: decodable, and of the size its COCO record says.

A corrupt file or a size that differs from the JSON would otherwise fail only when first
loaded (inside a DataLoader worker, mid-training). Files are checked in parallel threads
(PIL's decoders release the GIL) and the result is cached per file, keyed by path, size
and modification time (``DETIMB_CACHE_DIR``, else ``$XDG_CACHE_HOME/detimb``), so a second
run pays nothing. ``data.check_images: false`` (``--skip-image-check``) skips it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from detimb.data.coco_validate import CocoRecords
from detimb.errors import DatasetError
from detimb.utils import atomic_write_json, cache_dir

CACHE_NAME = "image_headers.json"


def cache_file() -> Path:
    return cache_dir() / CACHE_NAME


def _read(path: Path) -> dict[str, Any]:
    """{size: [w, h]} or {error: ...} for one file: the header, then a full verification pass.
    GeoTIFFs PIL cannot open (more than 4 bands, 16-bit colour) are read with rasterio."""
    try:
        with Image.open(path) as im:
            size = list(im.size)
            im.verify()
        return {"size": size}
    except Exception as err:  # noqa: BLE001 - any decoder failure means an unusable file
        if path.suffix.lower() in (".tif", ".tiff"):
            return _read_raster(path, err)
        return {"error": f"{type(err).__name__}: {err}"}


def _read_raster(path: Path, pil_error: Exception) -> dict[str, Any]:
    try:
        import rasterio
    except ImportError:
        return {"error": f"{type(pil_error).__name__}: {pil_error} (rasterio, the geo extra, reads such GeoTIFFs)"}
    try:
        with rasterio.open(path) as src:
            src.read(1)  # every block of one band decodes
            return {"size": [src.width, src.height]}
    except Exception as err:  # noqa: BLE001
        return {"error": f"{type(err).__name__}: {err}"}


def check_images(records: CocoRecords, img_dir: str | Path, progress: bool = False, workers: int = 8) -> int:
    """Raise a DatasetError naming the first bad images; returns how many were read (not cached)."""
    root = Path(img_dir)
    cache_path = cache_file()
    try:
        cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (json.JSONDecodeError, OSError):
        cache = {}  # a broken cache is rebuilt
    todo: list[tuple[str, Path, str]] = []
    results: dict[str, dict[str, Any]] = {}
    for img in records.images:
        path = (root / img["file_name"]).resolve()
        stat = path.stat()
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        if key in cache:
            results[img["file_name"]] = cache[key]
        else:
            todo.append((img["file_name"], path, key))
    if todo:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            read = list(tqdm(pool.map(_read, [p for _, p, _ in todo]), total=len(todo), desc="checking images",
                             disable=not progress))
        for (name, _, key), result in zip(todo, read):
            results[name] = result
            cache[key] = result
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache_path, cache)
    problems = []
    for i, img in enumerate(records.images):
        got = results[img["file_name"]]
        if "error" in got:
            problems.append(f"images[{i}] (id {img['id']}) {img['file_name']} cannot be decoded ({got['error']})")
        elif got["size"] != [img["width"], img["height"]]:
            problems.append(f"images[{i}] (id {img['id']}) {img['file_name']} is {got['size'][0]}x{got['size'][1]}"
                            f" but the JSON says {img['width']}x{img['height']}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DatasetError(f"{records.path}: " + "; ".join(problems[:3]) + more + ". Fix: replace the file or correct"
                           " its width/height (or skip this check with --skip-image-check if you know better)")
    return len(todo)
