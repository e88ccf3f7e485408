"""``detimb-sweep --remedies auto`` on the benchmark datasets, as a user would run it on theirs.

    python benchmarks/sweep/run.py --dataset shapes|fashion|digits [--iters 2500] [--seeds 0 1 2]
        [--workers 2] [--remedies auto] [--config detimb://demo/faster_rcnn_shapes]
        [--out benchmarks/sweep/<dataset>]

Each dataset is built once under ``data/`` (shapes: detimb's generator; fashion: Fashion-MNIST
garments on canvases, ``apt-get install dataset-fashion-mnist``; digits: scikit-learn's real
handwritten digits on canvases, ``benchmarks/sweep/digits.py``), and the demo Faster R-CNN
config (``detimb://demo/faster_rcnn_shapes``; ``--config`` another, e.g. the demo RetinaNet)
is pointed at it, as the efficacy matrix does.
The sweep resumes: run the same command again after a stop.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from detimb.data.fashion import DEBIAN_DIR, FashionSpec, make_fashion_dataset  # noqa: E402
from detimb.data.synthetic import ShapesSpec, make_shapes_dataset  # noqa: E402
from detimb.sweeps.run import sweep  # noqa: E402

CONFIG = "detimb://demo/faster_rcnn_shapes"


def build(name: str, root: Path, quick: bool = False) -> Path:
    """The dataset's folder, built once (``quick``: a tiny version, for tests of the runners)."""
    out = root / (f"{name}_quick" if quick else name)
    if (out / "annotations" / "val.json").is_file():
        return out
    if name == "shapes":
        make_shapes_dataset(out, ShapesSpec(train_counts=(40, 20, 10, 6, 4, 2), val_counts=(6, 4, 4, 3, 3, 3),
                                            image_size=64, min_object=10, max_object=24) if quick else ShapesSpec())
    elif name == "fashion":
        make_fashion_dataset(out, DEBIAN_DIR, FashionSpec(train_counts=(40, 20, 10, 5), val_counts=(5,) * 4,
                                                          canvas_size=64, min_object=16, max_object=28)
                             if quick else FashionSpec())
    elif name == "digits" and not quick:
        from benchmarks.sweep.digits import DigitsSpec, make_digits_dataset

        make_digits_dataset(out, DigitsSpec())
    else:
        raise SystemExit(f"unknown dataset {name!r}: shapes, fashion or digits (quick: shapes or fashion)")
    return out


def data_overrides(data: Path) -> list[str]:
    """A config pointed at the dataset in ``data`` (annotations/{train,val}.json, train/, val/)."""
    return [f"data.train.ann_file={data}/annotations/train.json", f"data.train.img_dir={data}/train",
            f"data.val.ann_file={data}/annotations/val.json", f"data.val.img_dir={data}/val"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--iters", type=int, default=2500)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--remedies", nargs="+", default=["auto"])
    p.add_argument("--config", default=CONFIG, help="the base config the dataset is put into")
    p.add_argument("--data-root", default=str(REPO / "data"))
    p.add_argument("--out")
    args = p.parse_args()
    overrides = data_overrides(build(args.dataset, Path(args.data_root)))
    result = sweep(args.config, out=args.out or REPO / "benchmarks" / "sweep" / args.dataset, remedies=args.remedies,
                   seeds=args.seeds, iters=args.iters, workers=args.workers, overrides=overrides)
    print(result.verdict)


if __name__ == "__main__":
    main()
