"""COCO datasets, transforms, image samplers and dataset tools (no model code here)."""
