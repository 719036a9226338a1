"""Waking a worker when one file in a directory changes (watchdog).

File-system events only *wake* a worker (the tailer, the GeoIP reloader); the worker then
looks at the file itself, so a missed or duplicated event costs nothing but latency.
"""

from __future__ import annotations

import os
import threading

from watchdog.events import FileSystemEvent, FileSystemEventHandler


class FileWake(FileSystemEventHandler):
    """Set ``event`` whenever a watchdog event (created, modified, moved to or from, deleted)
    names a file called ``name`` in the watched directory."""

    def __init__(self, name: str, event: threading.Event) -> None:
        self._name = name
        self._event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        for p in (event.src_path, getattr(event, "dest_path", "")):
            text = p.decode() if isinstance(p, bytes) else p
            if text and os.path.basename(text) == self._name:  # noqa: PTH119
                self._event.set()
                return
