"""A real-pixel long-tailed detection set: Fashion-MNIST garments pasted onto canvases.

Fashion-MNIST (Zalando, MIT) comes from Debian's ``dataset-fashion-mnist`` package
(``apt-get install dataset-fashion-mnist``; files under ``/usr/share/datasets/fashion-mnist``).
Each object is one 28 x 28 garment, scaled to ``min_object``..``max_object`` px, tinted, and
alpha-blended (its own intensity is the alpha) onto the cluttered backgrounds of the
shapes dataset; its mask is where the alpha exceeds 0.1, written as RLE, with the mask's
box. Training garments come from the train file, validation garments from the t10k
file, so no garment is in both splits. Classes get the instance counts given; rare and
head classes seldom share an image, as in the shapes dataset.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from detimb.data.synthetic import _background, _group_images, _iou, check_counts_and_seed
from detimb.errors import DatasetError, InputError
from detimb.utils import atomic_write_json

FASHION_CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
DEFAULT_TRAIN_COUNTS = (800, 400, 200, 100, 60, 40, 25, 15, 10, 6)
DEFAULT_VAL_COUNTS = (60,) * 10


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzipped or not): uint8 images (N, rows, cols) or labels (N,)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, gzip.BadGzipFile) as err:
        raise DatasetError(f"{path}: cannot read an IDX file ({err}). Fix: apt-get install dataset-fashion-mnist")\
            from err
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (2049, 2051):
        raise DatasetError(f"{path}: IDX magic {magic} is neither labels (2049) nor images (2051)")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(1 if magic == 2049 else 3)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(dims))
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: holds {data.size} values, its header says {dims}")
    return data.reshape(dims)


@dataclass(kw_only=True)
class FashionSpec:
    """Instance counts per class (in ``FASHION_CLASSES`` order, up to 10), canvas size, seed."""

    train_counts: tuple[int, ...] = DEFAULT_TRAIN_COUNTS
    val_counts: tuple[int, ...] = DEFAULT_VAL_COUNTS
    canvas_size: int = 128
    min_object: int = 24
    max_object: int = 48
    max_objects_per_image: int = 4
    mix: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.train_counts) != len(self.val_counts) or not 1 <= len(self.train_counts) <= 10:
            raise InputError("train_counts and val_counts (--train-counts, --val-counts) need one entry per class,"
                             f" 1 to 10 classes; got {len(self.train_counts)} and {len(self.val_counts)}")
        check_counts_and_seed(self.train_counts, self.val_counts, self.seed)
        if not 8 <= self.min_object <= self.max_object < self.canvas_size:
            raise InputError("need 8 <= min_object <= max_object < canvas_size")


def _paste(canvas: np.ndarray, garment: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blend the garment into ``box`` (x0, y0, x1, y1 ints) of the canvas; returns its mask (H, W)."""
    x0, y0, x1, y1 = box
    alpha = cv2.resize(garment, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    under = canvas[y0:y1, x0:x1].astype(np.float32)
    tint = rng.uniform(0.3, 1.0, 3) * 255.0
    if np.abs(tint - under.reshape(-1, 3).mean(0)).sum() < 150:  # keep the garment visible
        tint = 255.0 - under.reshape(-1, 3).mean(0)
    canvas[y0:y1, x0:x1] = (under * (1 - alpha[..., None]) + tint * alpha[..., None]).round().astype(np.uint8)
    mask = np.zeros(canvas.shape[:2], dtype=np.uint8)
    mask[y0:y1, x0:x1] = alpha > 0.1
    return mask


def write_glyph_split(out: Path, split: str, counts: tuple[int, ...], spec: FashionSpec, images: np.ndarray,
                      labels: np.ndarray, seed: int, *, names: tuple[str, ...] = FASHION_CLASSES,
                      source: str = "Fashion-MNIST garments", supercategory: str = "garment") -> dict:
    """One split: ``counts[c]`` objects of class ``c``, each one of ``images`` (uint8 glyphs,
    their intensity the alpha) whose label is ``c``, pasted onto cluttered canvases; COCO
    with RLE masks and the masks' boxes, categories named ``names``."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in range(len(counts))]
    img_dir = out / split
    img_dir.mkdir(parents=True, exist_ok=True)
    records, annotations = [], []
    groups = _group_images(counts, _Grouping(spec), rng)  # type: ignore[arg-type]
    for image_id, group in enumerate(groups, start=1):
        canvas = _background(spec.canvas_size, rng)
        placed: list[np.ndarray] = []
        for cls in group:
            for _ in range(50):
                side = int(rng.integers(spec.min_object, spec.max_object + 1))
                x0, y0 = (int(v) for v in rng.integers(0, spec.canvas_size - side + 1, 2))
                box = np.array([x0, y0, x0 + side, y0 + side])
                if all(_iou(box, b) < 0.05 for b in placed):
                    break
            placed.append(box)
            garment = images[by_class[cls][int(rng.integers(len(by_class[cls])))]]
            mask = _paste(canvas, garment, box, rng)
            if not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "area": float(mask.sum()),
                                "segmentation": rle, "iscrowd": 0})
        file_name = f"{image_id:06d}.png"
        cv2.imwrite(str(img_dir / file_name), canvas)
        records.append({"id": image_id, "file_name": file_name, "width": spec.canvas_size,
                        "height": spec.canvas_size})
    coco = {"info": {"description": f"{source} on canvases ({split}), seed {spec.seed}"},
            "images": records, "annotations": annotations,
            "categories": [{"id": i + 1, "name": names[i], "supercategory": supercategory}
                           for i in range(len(counts))]}
    atomic_write_json(out / "annotations" / f"{split}.json", coco)
    return coco


@dataclass
class _Grouping:
    """The two fields of a spec that ``_group_images`` reads."""

    spec: FashionSpec

    @property
    def max_objects_per_image(self) -> int:
        return self.spec.max_objects_per_image

    @property
    def mix(self) -> float:
        return self.spec.mix


def make_fashion_dataset(out: str | Path, source: str | Path = DEBIAN_DIR, spec: FashionSpec | None = None
                         ) -> dict[str, Path]:
    """Write ``out/{train,val}/*.png`` and ``out/annotations/{train,val}.json`` from the
    Fashion-MNIST IDX files in ``source``; returns the json paths."""
    spec = spec or FashionSpec()
    source, out = Path(source), Path(out)
    paths = {}
    for offset, (split, prefix, counts) in enumerate((("train", "train", spec.train_counts),
                                                      ("val", "t10k", spec.val_counts))):
        images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        write_glyph_split(out, split, counts, spec, images, labels, seed=spec.seed * 2 + offset)
        paths[split] = out / "annotations" / f"{split}.json"
    return paths
