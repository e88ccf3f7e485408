"""Tiling speed and memory: detimb vs a bare OpenCV read+write loop vs SAHI's slice_coco.

    python benchmarks/tiling.py [--geotiff-sizes 10000 20000 40000] [--png-size 20000] [--boxes 20000]
        [--levels 1 6] [--sahi-python /path/to/venv/bin/python] [--deepforest DIR] [--work /tmp/tiling_bench]
        [--scenes generated texture]

Every run is a fresh child process; its peak resident memory is that child's
``ru_maxrss``. Scenes are generated: GeoTIFFs block by block from deterministic structured
pixels; two PNG scenes of ``--png-size``: ``generated`` (the same structured pixels, which
compress easily) and ``texture`` (real aerial texture: deepforest's 2299 x 2472 crop,
mirror-tiled, which compresses as imagery does; needs ``--deepforest``, the folder of the
deepforest wheel's ``deepforest/data``, fetched with ``pip download --no-deps
deepforest==2.1.0``). Each PNG scene is tiled by detimb, by a bare OpenCV loop (read the
whole scene, crop, write in 2 threads) and by SAHI's ``slice_coco``. SAHI is never a
dependency: pass the python of a separate environment where ``pip install sahi`` was run.
Results go to ``benchmarks/results/tiling_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import cpu_name  # noqa: E402

MEASURE = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
           "rc = subprocess.run(sys.argv[1:]).returncode; dt = time.perf_counter() - t; "
           "print('MEASURE', rc, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")

BARE_LOOP = """
import sys, cv2
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from detimb.data.tiling.grid import tile_grid
image = cv2.imread(sys.argv[1], cv2.IMREAD_UNCHANGED)
out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
level = int(sys.argv[3])
def write(t):
    cv2.imwrite(str(out / f"{t.x0}_{t.y0}.png"), image[t.y0:t.y1, t.x0:t.x1], [cv2.IMWRITE_PNG_COMPRESSION, level])
with ThreadPoolExecutor(2) as pool:
    list(pool.map(write, tile_grid(image.shape[0], image.shape[1], 512, 512, 0.2, "shift")))
"""

SAHI = """
import sys
from sahi.slicing import slice_coco
coco, _ = slice_coco(coco_annotation_file_path=sys.argv[1], image_dir=sys.argv[2],
                     output_coco_annotation_file_name="sahi", output_dir=sys.argv[3], slice_height=512,
                     slice_width=512, overlap_height_ratio=0.2, overlap_width_ratio=0.2, min_area_ratio=0.1,
                     ignore_negative_samples=False, verbose=False)
"""


def measure(cmd: list[str]) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True)
    line = [x for x in proc.stdout.splitlines() if x.startswith("MEASURE")]
    if not line:
        raise RuntimeError(proc.stderr[-2000:])
    _, rc, seconds, rss_kb = line[-1].split()
    if int(rc) != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {proc.stderr[-2000:]}")
    return {"seconds": round(float(seconds), 2), "peak_rss_mib": round(int(rss_kb) / 1024, 1)}


def scene_rows(y0: int, rows: int, width: int) -> np.ndarray:
    """Deterministic structured pixels (3, rows, width): smooth gradients and a coarse checker."""
    y = np.arange(y0, y0 + rows, dtype=np.int64)[:, None]
    x = np.arange(width, dtype=np.int64)[None, :]
    base = ((x // 64 + y // 64) % 2) * 60
    return np.stack([(base + x % 181) % 256, (base + y % 157) % 256, (base + (x + y) % 113) % 256]).astype(np.uint8)


def make_geotiff(path: Path, size: int) -> None:
    if path.is_file():
        return
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "tiled": True,
               "blockxsize": 512, "blockysize": 512, "crs": "EPSG:32617",
               "transform": rasterio.transform.from_origin(400000.0, 3300000.0, 0.1, 0.1), "BIGTIFF": "YES"}
    part = path.with_name(f".{path.name}.part")  # renamed when whole: an interrupted run leaves no scene
    with rasterio.open(part, "w", **profile) as dst:
        for y0 in range(0, size, 512):
            rows = min(512, size - y0)
            dst.write(scene_rows(y0, rows, size), window=Window(0, y0, size, rows))
    part.replace(path)


def mirror_tiled(texture: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) pixels: ``texture`` repeated, every other copy flipped so that edges meet."""
    h, w = texture.shape[:2]
    flips = {(fy, fx): texture[::-1 if fy else 1, ::-1 if fx else 1] for fy in (0, 1) for fx in (0, 1)}
    out = np.empty((size, size, 3), dtype=np.uint8)
    for i, y0 in enumerate(range(0, size, h)):
        for j, x0 in enumerate(range(0, size, w)):
            block = flips[(i % 2, j % 2)]
            out[y0:y0 + h, x0:x0 + w] = block[:size - y0, :size - x0]
    return out


def make_png_scene(folder: Path, size: int, boxes: int, texture: Path | None = None) -> tuple[Path, Path]:
    """A PNG scene (generated pixels, or ``texture`` mirror-tiled) with ``boxes`` random boxes."""
    image_path, ann_path = folder / "scene.png", folder / "scene.json"
    if not image_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        if texture is None:
            bgr = cv2.cvtColor(np.moveaxis(scene_rows(0, size, size), 0, -1), cv2.COLOR_RGB2BGR)
        else:
            bgr = mirror_tiled(cv2.imread(str(texture), cv2.IMREAD_COLOR), size)
        cv2.imwrite(str(image_path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        del bgr
    rng = np.random.default_rng(0)
    wh = rng.uniform(10, 60, (boxes, 2))
    xy = rng.uniform(0, size - 60, (boxes, 2))
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": float(w * h),
             "bbox": [round(float(x), 2), round(float(y), 2), round(float(w), 2), round(float(h), 2)]}
            for i, ((x, y), (w, h)) in enumerate(zip(xy, wh))]
    ann_path.write_text(json.dumps({"images": [{"id": 1, "file_name": "scene.png", "width": size, "height": size}],
                                    "annotations": anns, "categories": [{"id": 1, "name": "object"}]}))
    return image_path, ann_path


def count_tiles(folder: Path, suffix: str) -> int:
    return sum(1 for _ in folder.rglob(f"*{suffix}"))


def png_runs(image: Path, ann: Path, levels: list[int], sahi_python: str | None, work: Path,
             tile: list[str]) -> dict[str, dict]:
    """detimb, the bare OpenCV loop and SAHI (when given) tiling one PNG scene."""
    runs: dict[str, dict] = {}
    for level in levels:
        out = work / f"tiles_png_{level}"
        shutil.rmtree(out, ignore_errors=True)
        r = measure([*tile, "--coco", str(ann), "--images", str(image.parent), "--out", str(out),
                     "--png-compression", str(level)])
        data = json.loads((out / "annotations.json").read_text())
        r.update(tiles=len(data["images"]), annotations=len(data["annotations"]))
        runs[f"detimb_level{level}"] = r
        print(f"{image.parent.name} detimb PNG level {level}: {r}", flush=True)
        shutil.rmtree(out)
        bare = work / f"bare_{level}"
        shutil.rmtree(bare, ignore_errors=True)
        r = measure([sys.executable, "-c", BARE_LOOP, str(image), str(bare), str(level), str(REPO)])
        r.update(tiles=count_tiles(bare, ".png"), write_threads=2)
        runs[f"opencv_loop_level{level}"] = r
        print(f"{image.parent.name} bare OpenCV loop level {level}: {r}", flush=True)
        shutil.rmtree(bare)
    if sahi_python:
        out = work / "sahi"
        shutil.rmtree(out, ignore_errors=True)
        r = measure([sahi_python, "-c", SAHI, str(ann), str(image.parent), str(out)])
        data = json.loads(next(out.glob("sahi*.json")).read_text())
        r.update(tiles=len(data["images"]), annotations=len(data["annotations"]), png_level="PIL default (6)")
        runs["sahi_slice_coco"] = r
        print(f"{image.parent.name} SAHI slice_coco: {r}", flush=True)
        shutil.rmtree(out)
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--geotiff-sizes", type=int, nargs="*", default=[10000, 20000, 40000])
    p.add_argument("--png-size", type=int, default=20000)
    p.add_argument("--boxes", type=int, default=20000)
    p.add_argument("--levels", type=int, nargs="+", default=[1, 6], help="PNG compression levels to compare")
    p.add_argument("--sahi-python", help="python of an environment with sahi installed")
    p.add_argument("--deepforest", help="folder holding 2019_YELL_2_528000_4978000_image_crop2.png")
    p.add_argument("--scenes", nargs="*", choices=("generated", "texture"), default=["generated", "texture"],
                   help="PNG scenes to tile (texture needs --deepforest)")
    p.add_argument("--work", default="/tmp/tiling_bench")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/tiling_cpu.json"))
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tile = [sys.executable, str(REPO / "tools/tile.py"), "--size", "512", "--overlap", "0.2", "--no-progress"]
    results: dict = {"machine": cpu_name(), "tile": "512 px, overlap 0.2, edge shift", "geotiff": {}, "png": {}}

    for size in args.geotiff_sizes:  # raster scenes: memory must stay flat as they grow
        scene = work / f"scene_{size}.tif"
        make_geotiff(scene, size)
        out = work / f"tiles_tif_{size}"
        shutil.rmtree(out, ignore_errors=True)
        r = measure([*tile, "--raster", str(scene), "--out", str(out)])
        r["tiles"] = count_tiles(out / "images", ".tif")
        r["tiles_per_s"] = round(r["tiles"] / r["seconds"], 1)
        results["geotiff"][str(size)] = r
        print(f"GeoTIFF {size}: {r}", flush=True)
        shutil.rmtree(out)
        if size > 20000:
            scene.unlink()

    if args.deepforest:
        out = work / "tiles_deepforest"
        shutil.rmtree(out, ignore_errors=True)
        name = "2019_YELL_2_528000_4978000_image_crop2.png"
        coco = work / "deepforest.json"
        coco.write_text(json.dumps({"images": [{"id": 1, "file_name": name, "width": 2299, "height": 2472}],
                                    "annotations": [], "categories": [{"id": 1, "name": "Tree"}]}))
        r = measure([*tile, "--coco", str(coco), "--images", args.deepforest, "--out", str(out)])
        r["tiles"] = count_tiles(out / "images", ".png")
        r["tiles_per_s"] = round(r["tiles"] / r["seconds"], 1)
        results["deepforest_scene"] = r
        print(f"deepforest 2299x2472: {r}", flush=True)

    texture = Path(args.deepforest) / "2019_YELL_2_528000_4978000_image_crop2.png" if args.deepforest else None
    for kind in args.scenes if args.png_size else []:
        if kind == "texture" and texture is None:
            raise SystemExit("--scenes texture needs --deepforest DIR (pip download --no-deps deepforest==2.1.0)")
        image, ann = make_png_scene(work / f"png_{kind}", args.png_size, args.boxes,
                                    texture if kind == "texture" else None)
        key = "png" if kind == "generated" else "png_texture"
        results[key] = {"size": args.png_size, "boxes": args.boxes, "pixels": kind,
                        "scene_png_mib": round(image.stat().st_size / 2**20, 1),
                        "runs": png_runs(image, ann, args.levels, args.sahi_python, work, tile)}
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
