"""Pictures of predictions: boxes, masks and class maps drawn on images, written atomically.

``detimb.visualization.scene`` (decimated pictures of large rasters) needs the ``geo`` extra
and is imported by name.
"""

from detimb.visualization.draw import draw
from detimb.visualization.drawing import LabelText, class_color, draw_class_map, draw_detections, side_by_side
from detimb.visualization.pictures import save_picture

__all__ = ["LabelText", "class_color", "draw", "draw_class_map", "draw_detections", "save_picture", "side_by_side"]
