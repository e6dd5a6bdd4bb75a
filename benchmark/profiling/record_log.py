"""The append-only log a long pass resumes from: a JSON header line, then one JSON record per line.

Each record is flushed and fsynced as it is written (:func:`append_record`), so a kill loses at most
the record in flight: a torn last line, which :func:`read_records` drops and :func:`open_records`
cuts off before appending goes on. The timing pass and the memory pass keep their logs this way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from benchmark.errors import HwlmError
from benchmark.files import write_text

__all__ = ["read_records", "open_records", "append_record"]


def read_records(path: str | os.PathLike, what: str) -> tuple[dict, list[dict]]:
    """``(header, records)`` of the log at ``path``; a torn last line is dropped. ``what`` names the
    log in errors (e.g. ``"timing log"``)."""
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    try:
        head = json.loads(lines[0])
    except ValueError:
        raise HwlmError(f"invalid {what} {path}: its first line is not a JSON header") from None
    if not isinstance(head, dict):
        raise HwlmError(f"invalid {what} {path}: its first line is not a JSON header")
    records = []
    for i, line in enumerate(lines[1:], 2):
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if any(lines[i:]):
                raise HwlmError(f"invalid {what} {path}: line {i} is not JSON (and not the last)") from None
    return head, records


def open_records(path: str | os.PathLike, header: dict, what: str) -> tuple[dict | None, list[dict]]:
    """Start a log with ``header`` (written atomically) and return ``(None, [])``; or, when it exists,
    return its ``(header, records)`` after cutting a torn last line off the file — the caller checks
    that the header is its own before appending."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(header) + "\n")
        return None, []
    head, records = read_records(path, what)
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # every complete line ends with a newline; what follows the last is torn
    if end != len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return head, records


def append_record(f: IO[bytes], record: Any) -> None:
    """Append one record to a log opened with ``open(path, "ab")`` and make it durable."""
    f.write(json.dumps(record).encode() + b"\n")
    f.flush()
    os.fsync(f.fileno())
