"""Progress as JSON lines on stdout, the format docs/JOB.md specifies.

One object per line, flushed at once so the Blender side (polling the pipe on a timer) sees it.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None):
        self._stream = stream

    def emit(self, stage: str, done: int | None = None, total: int | None = None, **extra) -> None:
        record = {"stage": stage}
        if done is not None:
            record["done"] = done
        if total is not None:
            record["total"] = total
        record.update(extra)
        stream = self._stream or sys.stdout
        stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        stream.flush()

    def warning(self, message: str) -> None:
        """Something the artist should know that does not stop the job."""
        self.emit("warning", message=message)


class Silent(Progress):
    """For library use and tests: drops every record."""

    def emit(self, stage, done=None, total=None, **extra) -> None:
        pass


class Recorded(Progress):
    """For library use and tests: keeps every record, as the dicts the JSON lines would hold."""

    def __init__(self):
        super().__init__()
        self.records: list[dict] = []

    def emit(self, stage, done=None, total=None, **extra) -> None:
        self.records.append({"stage": stage, "done": done, "total": total, **extra})


class Nested(Progress):
    """A whole job run inside a command (sample-poke runs one job per sample): its lines go to
    the outer progress, its own "done" renamed "<name>_done" so that only the command's last
    line reads "done"."""

    def __init__(self, outer: Progress, name: str):
        super().__init__()
        self.outer, self.name = outer, name

    def emit(self, stage, done=None, total=None, **extra) -> None:
        self.outer.emit(f"{self.name}_done" if stage == "done" else stage, done, total, **extra)
