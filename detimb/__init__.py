"""detimb: swappable remedies for class and sample imbalance in object detection."""

__version__ = "0.1.0"
