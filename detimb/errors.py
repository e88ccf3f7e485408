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


class OptionError(DetimbError, ValueError):
    """A tool's option or a function's argument is out of range or contradicts another."""


class InputError(DetimbError, ValueError):
    """An image handed to the Python API is missing, not an image, or of the wrong shape or type."""


def user_message(err: BaseException) -> str:
    """The message to show for ``err``: a DataLoader worker re-raises a dataset error with
    its traceback folded into the message ("Caught DatasetError in DataLoader worker
    process 0 ... Original Traceback ..."); the user needs only the original last line."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    name = type(err).__name__
    return last.split(f"{name}: ", 1)[1] if f"{name}: " in last else last
