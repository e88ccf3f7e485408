"""``tools/tile.py``: cut a COCO dataset, or rasters with their labels, into tiles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detimb.data.coco_validate import read_coco_json, validate_coco
from detimb.cli.common import run_cli
from detimb.errors import DatasetError, DetimbError
from detimb.optional import require_extra

if TYPE_CHECKING:
    from detimb.data.tiling import Scene, TileOptions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from detimb.data.tiling import EDGE_POLICIES
    from detimb.data.tiling.tiler import FORMATS

    p = argparse.ArgumentParser(description="Tile images and their COCO annotations (or rasters and their labels)"
                                            " into a new COCO dataset with a tile index. Inputs are never modified.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--coco", help="COCO annotation file (with --images)")
    src.add_argument("--raster", nargs="+", help="raster file(s): GeoTIFF or anything rasterio reads")
    p.add_argument("--images", help="image folder of --coco")
    p.add_argument("--labels", help="labels of --raster: GeoJSON in the raster's CRS, or COCO in pixels")
    p.add_argument("--label-field", default="label", help="GeoJSON property holding the class (default: label)")
    p.add_argument("--out", required=True, help="new output folder: images/ and annotations.json")
    p.add_argument("--size", type=int, nargs="+", default=[512], metavar="PX", help="tile size: S or H W")
    p.add_argument("--overlap", type=float, nargs="+", default=[0.2],
                   help="overlap: ratio of the tile (< 1) or pixels (>= 1); one value or Y X (default 0.2)")
    p.add_argument("--edge", choices=EDGE_POLICIES, default="shift",
                   help="last row/column: shift inward (SAHI), pad past the edge, or skip (default shift)")
    p.add_argument("--min-visible", type=float, default=0.1,
                   help="keep an annotation in a tile when at least this share of it is inside (default 0.1)")
    p.add_argument("--empty-keep", type=float, default=1.0, help="share of tiles without annotations kept (seeded)")
    p.add_argument("--write-threads", type=int, default=2, help="threads encoding and writing one scene's tiles")
    p.add_argument("--empty-ratio", type=float, default=None,
                   help="keep tiles without annotations so that they make up this share of the kept tiles (seeded)")
    p.add_argument("--max-nodata", type=float, default=0.99, help="drop tiles with a larger nodata share")
    p.add_argument("--format", choices=FORMATS, default="auto", help="auto: GeoTIFF when georeferenced, else PNG")
    p.add_argument("--bands", type=int, nargs="+", help="1-based bands to keep (default all)")
    p.add_argument("--dtype", help="convert pixels to this type (e.g. uint8); default: keep")
    p.add_argument("--scale", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="with --dtype: map MIN..MAX linearly onto the type's range")
    p.add_argument("--png-compression", type=int, default=1, help="PNG compression level 0-9 (default 1)")
    p.add_argument("--jpeg-quality", type=int, default=95)
    p.add_argument("--tif-compress", help="GeoTIFF compression (e.g. deflate, lzw); default none")
    p.add_argument("--workers", type=int, default=1, help="scenes tiled in parallel processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def coco_scenes(ann_file: str, img_dir: str) -> tuple[list[Scene], list[dict[str, Any]]]:
    from detimb.data.tiling import Scene

    records = validate_coco(ann_file, img_dir, "clip")
    for message in records.warnings:
        print(f"warning: {message}", file=sys.stderr)
    keys = ("id", "file_name", "width", "height")
    scenes = [Scene(i, str(Path(img_dir) / img["file_name"]), {k: img[k] for k in keys},
                    records.annotations_by_image[img["id"]])
              for i, img in enumerate(records.images)]
    return scenes, records.categories


def raster_scenes(rasters: list[str], labels: str | None, label_field: str
                  ) -> tuple[list[Scene], list[dict[str, Any]]]:
    from detimb.data.tiling import Scene
    from detimb.data.tiling.labels import geojson_annotations, read_label_json
    from detimb.data.tiling.raster import RasterSource

    coco = None
    if labels and not labels.lower().endswith(".geojson"):
        sniffed = read_label_json(labels)
        coco = None if isinstance(sniffed, dict) and "features" in sniffed else read_coco_json(labels)
    categories: list[dict[str, Any]] = list(coco["categories"]) if coco else []
    names: dict[str, int] = {}
    scenes = []
    for i, path in enumerate(rasters):
        with RasterSource(path) as src:
            record = {"id": i + 1, "file_name": Path(path).name, "width": src.width, "height": src.height}
            anns: list[dict[str, Any]] = []
            if coco:
                matches = [im for im in coco["images"] if Path(im["file_name"]).name == record["file_name"]]
                if len(matches) != 1:
                    raise DatasetError(f"{labels}: no single image record named {record['file_name']}. Fix: name the"
                                       " raster's file in the COCO images")
                anns = [a for a in coco["annotations"] if a["image_id"] == matches[0]["id"]]
            elif labels:
                if not src.georeferenced:
                    raise DatasetError(f"{path}: GeoJSON labels need a georeferenced raster; this one has no CRS or"
                                       " transform. Fix: give COCO labels in pixels")
                anns, cats = geojson_annotations(labels, src.transform, label_field, names, raster_crs=src.crs,
                                                 raster_size=(src.width, src.height))
                categories = cats
        scenes.append(Scene(i, str(path), record, anns))
    return scenes, categories


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: tile(argv))


def tile_options(args: argparse.Namespace) -> TileOptions:
    from detimb.data.tiling import TileOptions

    size = tuple(args.size) if len(args.size) == 2 else (args.size[0], args.size[0])
    overlap = tuple(args.overlap) if len(args.overlap) == 2 else args.overlap[0]
    return TileOptions(size=size, overlap=overlap, edge=args.edge, min_visible=args.min_visible,  # type: ignore[arg-type]
                       empty_keep=args.empty_keep, empty_ratio=args.empty_ratio, max_nodata=args.max_nodata,
                       fmt=args.format, bands=args.bands, dtype=args.dtype,
                       scale=tuple(args.scale) if args.scale else None, png_compression=args.png_compression,
                       jpeg_quality=args.jpeg_quality, tif_compress=args.tif_compress, seed=args.seed,
                       write_threads=args.write_threads)


def tile(argv: list[str] | None) -> None:
    # the geo extra first: without it, say what to install rather than fail on an import
    require_extra("geo", "detimb-tile", ("rasterio", "shapely"))
    from detimb.data.tiling import run_tiling
    from detimb.data.tiling.tiler import check_output

    args = parse_args(argv)
    if args.coco and not args.images:
        raise DetimbError("--coco needs --images (the folder its file_names are relative to)")
    options = tile_options(args)
    inputs = [Path(args.coco), Path(args.images)] if args.coco else [Path(r) for r in args.raster]
    inputs += [Path(args.labels)] if args.labels else []
    check_output(Path(args.out), inputs)
    if args.coco:
        scenes, categories = coco_scenes(args.coco, args.images)
        source = {"coco": str(Path(args.coco).resolve()), "images": str(Path(args.images).resolve())}
    else:
        scenes, categories = raster_scenes(args.raster, args.labels, args.label_field)
        source = {"raster": [str(Path(r).resolve()) for r in args.raster],
                  "labels": str(Path(args.labels).resolve()) if args.labels else None}
    summary = run_tiling(scenes, categories, options, args.out, args.workers, not args.no_progress, source)
    print(f"{summary['tiles']} tiles with {summary['annotations']} annotations from {summary['scenes']} scenes"
          f" ({summary['tiles_in_grid']} in the grid; dropped: {summary['dropped_empty']} empty,"
          f" {summary['dropped_nodata']} nodata) -> {Path(args.out) / 'annotations.json'}")


if __name__ == "__main__":
    sys.exit(main())
