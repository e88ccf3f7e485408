"""The Fashion-MNIST canvas builder, on small IDX files written here (the real ones come from Debian)."""

import gzip

import numpy as np
import pytest

from detimb.data.coco_validate import validate_coco
from detimb.data.fashion import FashionSpec, make_fashion_dataset, read_idx
from detimb.errors import DatasetError


def write_idx(path, array):
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 30)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 6:22, 8:20] = 200  # a garment-like block
        images[:, 14, 14] = 11 if prefix == "train" else 22  # which file a garment came from
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 3, n))
    return tmp_path


def test_read_idx_round_trip_and_errors(idx_dir, tmp_path):
    images = read_idx(idx_dir / "train-images-idx3-ubyte.gz")
    assert images.shape == (60, 28, 28) and images[0, 14, 14] == 11
    assert read_idx(idx_dir / "t10k-labels-idx1-ubyte.gz").shape == (30,)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x99" + b"\x00" * 8))
    with pytest.raises(DatasetError, match="magic"):
        read_idx(tmp_path / "bad.gz")


def test_canvases_have_the_requested_long_tail(idx_dir, tmp_path):
    spec = FashionSpec(train_counts=(20, 8, 3), val_counts=(4, 4, 4), canvas_size=64, min_object=16, max_object=28)
    paths = make_fashion_dataset(tmp_path / "out", idx_dir, spec)
    train = validate_coco(paths["train"], tmp_path / "out" / "train")
    counts = np.bincount([a["category_id"] for anns in train.annotations_by_image.values() for a in anns])
    assert counts[1:].tolist() == [20, 8, 3]
    assert [c["name"] for c in train.categories] == ["tshirt", "trouser", "pullover"]
    ann = train.data["annotations"][0]
    x, y, w, h = ann["bbox"]
    assert 16 * 0.4 <= w <= 28 and ann["area"] > 0 and isinstance(ann["segmentation"], dict)
    val = validate_coco(paths["val"], tmp_path / "out" / "val")
    assert len(val.data["annotations"]) == 12
