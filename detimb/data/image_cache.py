"""A cache of decoded images (``data.cache``), shared by loader workers and by later runs.

Each decoded image (after the record's size check, before augmentation) is one ``.npy``
file named by its source file's path, size and modification time, and by how it was read
(``PixelSpec``): ``ram`` keeps the files in ``/dev/shm`` (Linux shared memory), ``disk``
in ``data.cache_dir`` (default ``<detimb cache>/decoded``). Files are written atomically
and read memory-mapped, so every worker and every run on the machine reads the one copy
through the page cache, with one memcpy per item instead of a decode. A changed source
file has another name, so it is decoded again (its old entry is removed), never served
stale. The cache is bounded by ``data.cache_max_gb``: a dataset whose decoded images do
not fit the bound, or the folder's free space, is refused before training with the
numbers and the fix.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from detimb.data.pixels import PixelSpec
from detimb.errors import ConfigError
from detimb.utils import atomic_write, cache_dir

SHARED_MEMORY = Path("/dev/shm")
GB = 1024**3


class DecodedImageCache:
    """Decoded images in ``folder``, read by ``PixelSpec`` ``pixels``."""

    def __init__(self, folder: Path, pixels: PixelSpec, max_bytes: int) -> None:
        self.folder, self.pixels, self.max_bytes = folder, pixels, max_bytes
        folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_config(cls, data: Any, pixels: PixelSpec) -> DecodedImageCache | None:
        """The cache ``data.cache`` asks for (None when null)."""
        if data.cache is None:
            return None
        if data.cache == "ram":
            if not SHARED_MEMORY.is_dir():
                raise ConfigError(f"data.cache: ram keeps images in {SHARED_MEMORY} (Linux shared memory), which this"
                                  " machine lacks. Fix: data.cache: disk")
            folder = SHARED_MEMORY / f"detimb-decoded-{os.getuid()}"
        else:
            folder = Path(data.cache_dir) if data.cache_dir else cache_dir() / "decoded"
        return cls(folder, pixels, int(float(data.cache_max_gb) * GB))

    def _stem(self, path: Path) -> str:
        return hashlib.sha1(f"{path.resolve()}|{self.pixels!r}".encode()).hexdigest()[:20]

    def entry(self, path: Path) -> Path:
        """The cache file of ``path`` as it is now (its size and modification time in the name)."""
        stat = path.stat()
        return self.folder / f"{self._stem(path)}-{stat.st_size}-{stat.st_mtime_ns}.npy"

    def get(self, path: Path, decode: Callable[[], np.ndarray]) -> np.ndarray:
        """The decoded image of ``path``: from the cache, else ``decode()`` d and kept."""
        try:
            entry = self.entry(path)
        except OSError:
            return decode()  # a missing file: the decoder names it
        try:
            return np.array(np.load(entry, mmap_mode="r"))
        except (OSError, ValueError):
            pass  # not cached yet (or torn by a crash outside the atomic rename): decode
        image = decode()
        for stale in self.folder.glob(f"{self._stem(path)}-*.npy"):
            if stale != entry:  # the file changed since it was cached
                stale.unlink(missing_ok=True)
        atomic_write(entry, lambda tmp: _save(tmp, image))
        return image

    def check_capacity(self, images: Iterable[tuple[Path, int, int]], where: str) -> None:
        """Refuse, before training, a dataset whose decoded images (path, height, width) do
        not fit ``data.cache_max_gb`` or the cache folder's free space."""
        item = 1 if self.pixels.is_rgb else 4  # uint8 RGB, else float32 bands
        needed = missing = 0
        for path, height, width in images:
            size = height * width * self.pixels.channels * item + 128  # the .npy header
            needed += size
            try:
                missing += 0 if self.entry(path).is_file() else size
            except OSError:
                missing += size
        if needed > self.max_bytes:
            raise ConfigError(f"data.cache: {where} decode to {needed / GB:.2f} GB, over data.cache_max_gb"
                              f" ({self.max_bytes / GB:.2f} GB). Fix: raise data.cache_max_gb, or set data.cache:"
                              " null")
        free = shutil.disk_usage(self.folder).free
        if missing > free:
            raise ConfigError(f"data.cache: {where} need {missing / GB:.2f} GB more in {self.folder}, which has"
                              f" {free / GB:.2f} GB free. Fix: data.cache: disk with data.cache_dir on a larger"
                              " disk, or data.cache: null")


def _save(tmp: str, image: np.ndarray) -> None:
    with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a name
        np.save(f, image)
