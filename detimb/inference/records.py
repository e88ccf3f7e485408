"""Run a detector over a dataset and turn its outputs into COCO result records."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from detimb.data.label_map import LabelMap
from detimb import distributed


def outputs_to_coco(output: dict[str, torch.Tensor], image_id: int, label_map: LabelMap,
                    mask_threshold: float = 0.5) -> dict[str, list[dict[str, Any]]]:
    """COCO ``bbox`` records (xywh) and, with masks, ``segmentation`` records (RLE)."""
    boxes = output["boxes"].detach().cpu().double().numpy()
    scores = output["scores"].detach().cpu().tolist()
    labels = output["labels"].detach().cpu().tolist()
    bbox, segm = [], []
    for k, (box, score, label) in enumerate(zip(boxes, scores, labels)):
        x0, y0, x1, y1 = box
        common = {"image_id": int(image_id), "category_id": label_map.coco_id(int(label)), "score": float(score)}
        bbox.append({**common, "bbox": [round(float(x0), 3), round(float(y0), 3), round(float(x1 - x0), 3),
                                        round(float(y1 - y0), 3)]})
        if "masks" in output:
            binary = (output["masks"][k, 0] > mask_threshold).cpu().numpy().astype(np.uint8)
            rle = mask_utils.encode(np.asfortranarray(binary))
            rle["counts"] = rle["counts"].decode("ascii")
            segm.append({**common, "segmentation": rle})
    return {"bbox": bbox, "segm": segm}


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device, label_map: LabelMap,
            *, progress: bool = True) -> dict[str, list[dict[str, Any]]]:
    """COCO results of every image in ``loader``, gathered from all ranks (each image once),
    in float32 even when training used mixed precision: an evaluation during training and
    ``detimb-eval`` of the same checkpoint give the same boxes."""
    was_training = model.training
    model.eval()
    records: dict[str, list[dict[str, Any]]] = {"bbox": [], "segm": []}
    seen: set[int] = set()
    for images, targets in tqdm(loader, desc="eval", leave=False, disable=not (progress and distributed.is_main())):
        images = [im.to(device, non_blocking=True) for im in images]
        outputs = model(images)
        for output, target in zip(outputs, targets):
            image_id = int(target["image_id"])
            if image_id in seen:
                continue
            seen.add(image_id)
            for kind, recs in outputs_to_coco(output, image_id, label_map).items():
                records[kind] += recs
    model.train(was_training)
    gathered = distributed.all_gather_objects((sorted(seen), records))
    merged: dict[str, list[dict[str, Any]]] = {"bbox": [], "segm": []}
    done: set[int] = set()
    for ids, recs in gathered:
        fresh = set(ids) - done
        done |= fresh
        for kind in merged:
            merged[kind] += [r for r in recs[kind] if r["image_id"] in fresh]
    return merged
