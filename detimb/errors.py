"""Errors that tell the user which file, which record, and how to fix it."""


class DetimbError(Exception):
    """Base class for detimb's user-facing errors."""


class ConfigError(DetimbError, ValueError):
    """A config file or override is malformed, names an unknown key, or has a wrong type."""


class DatasetError(DetimbError, ValueError):
    """A COCO annotation file or image is malformed, missing or inconsistent."""


class TrainingError(DetimbError, RuntimeError):
    """Training cannot continue (for example a NaN or infinite loss)."""


class CheckpointError(DetimbError, ValueError):
    """A checkpoint file is missing, empty, torn, foreign, unsafe, or does not fit the model."""
