"""``tools/infer.py``: sliced inference over large scenes; COCO results, GeoJSON for GeoTIFFs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from detimb import distributed
from detimb.cli.common import run_cli
from detimb.data.coco_validate import validate_coco
from detimb.data.label_map import LabelMap
from detimb.data.pixels import PixelSpec
from detimb.errors import DetimbError
from detimb.inference.merge import MATCHES, MERGES
from detimb.inference.restore import restore
from detimb.optional import require_extra
from detimb.utils import inside, not_an_input
from detimb.visualization import LabelText, draw_detections, save_picture

if TYPE_CHECKING:  # these need the geo extra (rasterio), imported once it is checked
    from detimb.inference.scene_runs import SceneBackend, SceneDone, SceneJob, SceneStore
    from detimb.inference.sliced import ScenePrediction, SliceSettings

SCENE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".img", ".vrt")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Detect objects in large scenes tile by tile and merge the tiles'"
                                            " predictions back onto each scene.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="the model's config (default: the one stored in the checkpoint)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images", nargs="+", required=True, help="scene files or folders of scenes")
    p.add_argument("--out", required=True,
                   help="output folder: results_bbox.json (+ results_segm.json for a model with masks; <scene>.geojson,"
                        " <scene>.gpkg for georeferenced scenes)")
    p.add_argument("--coco", help="COCO file naming the scenes: its image ids go into the results (for eval)")
    p.add_argument("--tile", type=int, nargs="+", default=[512], metavar="PX", help="tile size: S or H W")
    p.add_argument("--overlap", type=float, default=0.2, help="ratio (< 1) or pixels")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    p.add_argument("--full-image", action="store_true", help="also run the whole scene at once (small scenes)")
    p.add_argument("--merge", choices=MERGES, default="greedy_nmm",
                   help="how the tiles' detections of one object become one: SAHI's greedy merging, or NMS")
    p.add_argument("--match", choices=MATCHES, default="ios",
                   help="overlap measure between tiles' detections: intersection over the smaller box, or IoU")
    p.add_argument("--match-thr", type=float, default=0.5,
                   help="the overlap (of the match measure) above which two detections merge")
    p.add_argument("--class-agnostic", action="store_true", help="merge detections of different classes too")
    p.add_argument("--score-thr", type=float, default=0.0, help="tiles' detections below this score are dropped"
                                                                 " before merging")
    p.add_argument("--mask-thr", type=float, default=0.5,
                   help="a model with masks: mask probability above which a pixel is in the mask")
    p.add_argument("--geojson-crs", choices=("scene", "wgs84"), default="scene",
                   help="GeoJSON coordinates in the scene's CRS, or longitude/latitude (RFC 7946)")
    p.add_argument("--gpkg", action="store_true", help="also write <scene>.gpkg (one 'detections' layer; pyogrio)")
    p.add_argument("--draw", metavar="DIR", help="also write each scene with its detections drawn (PNG) to DIR")
    p.add_argument("--max-draw", type=int, default=500, help="with --draw: the highest-scoring N detections")
    p.add_argument("--labels", choices=[t.value for t in LabelText], default="score",
                   help="with --draw: label boxes with class and score, the class only, or nothing (labels are"
                        " sized to their box and left out where they would cover more than a quarter of it)")
    p.add_argument("--draw-max-side", type=int, default=4096,
                   help="with --draw: the picture's longer side in pixels (large scenes are read decimated)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar over the scenes")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: this process, or under torchrun this rank's share of the scenes (one GPU each);"
                        " ray: a pool of Ray actors (the ray extra), each holding the model once")
    p.add_argument("--workers", type=int, default=1, help="--backend ray: how many actors")
    p.add_argument("--threads", type=int, default=1, help="--backend ray: CPUs (torch threads) per actor")
    p.add_argument("--gpus", type=float, default=0.0, help="--backend ray: GPUs per actor (0: the CPU)")
    p.add_argument("--ray-address", help="--backend ray: the cluster to join (default: a new local Ray)")
    args = p.parse_args(argv)
    _check_args(p, args)
    return args


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What the flags' types cannot say; the slicing settings check their own ranges too."""
    if not 0.0 <= args.mask_thr < 1.0:
        p.error(f"--mask-thr must be in [0, 1), got {args.mask_thr}")
    if not 0.0 <= args.match_thr <= 1.0:
        p.error(f"--match-thr must be in [0, 1], got {args.match_thr}")
    for flag, value, low in (("--max-draw", args.max_draw, 1), ("--draw-max-side", args.draw_max_side, 1),
                             ("--workers", args.workers, 1), ("--threads", args.threads, 1)):
        if value < low:
            p.error(f"{flag} must be an integer >= {low}, got {value}")
    if args.gpus < 0:
        p.error(f"--gpus must be >= 0, got {args.gpus}")
    if len(args.tile) not in (1, 2) or min(args.tile) < 1:
        p.error(f"--tile must be one or two sizes >= 1 pixel, got {args.tile}")
    if args.overlap < 0 or (args.overlap >= 1 and args.overlap >= min(args.tile)):
        p.error(f"--overlap must be a ratio in [0, 1) or pixels below the tile size ({min(args.tile)}), got"
                f" {args.overlap}")


def scene_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in SCENE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise DetimbError(f"--images: {p} does not exist")
    if not out:
        raise DetimbError(f"--images: no scenes ({', '.join(SCENE_SUFFIXES)}) in {paths}")
    return out


def settings_of(args: argparse.Namespace, pixels: PixelSpec) -> SliceSettings:
    from detimb.inference.sliced import SliceSettings

    size = tuple(args.tile) if len(args.tile) == 2 else (args.tile[0], args.tile[0])
    return SliceSettings(size=size, overlap=args.overlap, batch_size=args.batch_size,  # type: ignore[arg-type]
                         full_image=args.full_image, method=args.merge, match=args.match, threshold=args.match_thr,
                         class_agnostic=args.class_agnostic, score_threshold=args.score_thr, pixels=pixels,
                         mask_threshold=args.mask_thr)


def scene_ids(coco: str | None, scenes: list[Path]) -> list[int]:
    """Each scene's image id: from the COCO file naming the scenes, else 1, 2, ..."""
    if not coco:
        return list(range(1, len(scenes) + 1))
    ids = {Path(im["file_name"]).name: im["id"] for im in validate_coco(coco, None).images}
    missing = [p.name for p in scenes if p.name not in ids]
    if missing:
        raise DetimbError(f"--coco {coco}: no image named {missing[0]}")
    return [ids[p.name] for p in scenes]


def write_scene_outputs(args: argparse.Namespace, path: Path, pred: ScenePrediction, label_map: LabelMap) -> None:
    """The scene's map features (GeoJSON, GeoPackage) and its picture, as asked."""
    from detimb.inference.geo import write_geojson, write_geopackage
    from detimb.visualization.scene import scene_picture

    out = Path(args.out)
    if pred.crs:
        write_geojson(out / f"{path.stem}.geojson", pred, label_map, wgs84=args.geojson_crs == "wgs84")
        if args.gpkg:
            write_geopackage(out / f"{path.stem}.gpkg", pred, label_map, path.name)
    elif args.gpkg or args.geojson_crs == "wgs84":
        raise DetimbError(f"{path}: the scene has no CRS, so there are no map coordinates to write;"
                          " drop --gpkg / --geojson-crs wgs84, or georeference the scene")
    if args.draw:
        picture, scale = scene_picture(path, args.draw_max_side)
        labels = pred.labels.tolist()
        drawn = not_an_input(inside(args.draw, f"{path.stem}.png", "--draw"), [path], "--draw")
        save_picture(drawn, draw_detections(
            picture, pred.boxes.numpy() * scale, np.array([label_map.coco_id(int(k)) for k in labels]),
            [label_map.names[int(k) - 1] for k in labels], pred.scores.numpy(), max_draw=args.max_draw,
            labels=LabelText(args.labels)))


def _scene_done(args: argparse.Namespace, store: SceneStore, label_map: LabelMap, mask_threshold: float
                ) -> SceneDone:
    """What happens where a scene finishes: its map features and picture, then its records
    (the mark that it is done)."""
    from detimb.inference.sliced import coco_records

    def done(job: SceneJob, pred: ScenePrediction) -> None:
        write_scene_outputs(args, job.path, pred, label_map)
        image = {"id": job.image_id, "file_name": job.path.name, "width": pred.width, "height": pred.height}
        store.save(job, image, coco_records(pred, job.image_id, label_map))
        masked = "" if pred.masks is None else \
            f" ({pred.empty_masks} whose mask is empty at {mask_threshold}: outlined by the box)"
        tqdm.write(f"{job.path.name}: {pred.tiles} tiles, {len(pred)} detections after {args.merge}{masked}")

    return done


def infer(args: argparse.Namespace) -> None:
    require_extra("geo", "detimb-infer (sliced inference)", ("rasterio", "shapely"))
    from detimb.inference.scene_runs import ModelSource, ProcessScenes, RayScenes, SceneJob, SceneStore

    ray = args.backend == "ray"
    rank, world, device = (0, 1, distributed.resolve_device("cpu")) if ray else distributed.setup(args.device)
    source = ModelSource(Path(args.checkpoint), Path(args.config) if args.config else None, tuple(args.cfg_options))
    restored = restore(source.checkpoint, config=source.config, overrides=list(source.overrides), device=device)
    if restored.segmentation:
        raise DetimbError("tools/infer.py runs detectors; this config is a segmentation model")
    settings = settings_of(args, restored.pixels)
    scenes = scene_files(args.images)
    jobs = [SceneJob(path, image_id) for path, image_id in zip(scenes, scene_ids(args.coco, scenes))]
    out = Path(args.out)
    store = SceneStore(out, source.run_key(settings))
    earlier = {job for job in jobs if store.done(job)}  # each scene file read once before the run
    if earlier and distributed.is_main():
        print(f"{len(earlier)} of {len(jobs)} scenes were finished by an earlier run with these settings: kept")
    backend: SceneBackend = (
        RayScenes(source, settings, workers=args.workers, threads=args.threads, gpus=args.gpus,
                  address=args.ray_address, progress=not args.no_progress) if ray else
        ProcessScenes(restored, settings, rank=rank, world=world, progress=not args.no_progress))
    backend.run(jobs, lambda job: job not in earlier, _scene_done(args, store, restored.label_map,
                                                                     settings.mask_threshold))
    distributed.barrier()
    if distributed.is_main():
        store.assemble(jobs, out)
        print(f"written to {out}")
    distributed.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: infer(args))


if __name__ == "__main__":
    sys.exit(main())
