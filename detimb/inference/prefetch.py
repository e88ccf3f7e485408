"""Items produced by a background thread a bounded number ahead of their consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

_DONE = object()


def prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """``items`` produced by a background thread at most ``depth`` ahead (GDAL and the
    decoders release the GIL, so reading overlaps the model); an error in the reader is
    raised here. ``depth`` 0 reads in the calling thread. Closing the returned generator
    stops the reader before it returns, so the source can be closed after it."""
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    reader = threading.Thread(target=_fill, args=(items, slots, stop), daemon=True, name="detimb-tile-reader")
    reader.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def _fill(items: Iterator[Any], slots: queue.Queue[Any], stop: threading.Event) -> None:
    try:
        for item in items:
            while not stop.is_set():
                try:
                    slots.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        slots.put(_DONE)
    except BaseException as err:  # noqa: BLE001 - handed to the consumer
        slots.put(err)
