"""The search journal: one JSON line per evaluation, appended and flushed as
each evaluation finishes, so a killed search (Ctrl-C, kill -9, a lost node)
loses nothing that finished.

Line 1 is a header with the hashes of the model, the data and the settings
(evaluator, space, constraints, searcher, seed, batch). A journal is reused
only when all three match; otherwise resuming is an error that says which
one differs. Records carry the evaluation index (the order in which the
searcher proposed the scheme), so records written out of order by parallel
workers replay in proposal order. A torn last line (killed mid-write) is
dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from micoc.errors import UsageError

__all__ = ["Journal", "JournalHeader", "settings_hash"]

FORMAT = "micoc-search-journal/1"


def settings_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class JournalHeader:
    model: str
    data: str
    settings: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "model_hash": self.model, "data_hash": self.data,
                "settings_hash": self.settings, "settings": self.detail}


class Journal:
    def __init__(self, path: str | Path, header: JournalHeader, *, resume: bool) -> None:
        self.path = Path(path)
        self.header = header
        self.records: dict[int, dict[str, Any]] = {}
        if resume and self.path.exists() and self.path.stat().st_size > 0:
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as f:
                f.write(json.dumps(header.to_json()) + "\n")
                f.flush()
                os.fsync(f.fileno())
        self._f = self.path.open("a", encoding="utf-8")

    def _load(self) -> None:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        complete = lines[:-1]  # the part after the last newline is torn (or empty)
        if lines[-1]:
            # Drop the torn tail so the next append starts on a fresh line.
            with self.path.open("r+b") as f:
                f.truncate(len(raw) - len(lines[-1]))
        if not complete:
            raise UsageError("cannot resume: the journal has no header", str(self.path))
        try:
            head = json.loads(complete[0])
        except json.JSONDecodeError:
            raise UsageError("cannot resume: the journal header is not JSON", str(self.path)) from None
        if head.get("format") != FORMAT:
            raise UsageError(f"cannot resume: not a {FORMAT} file", str(self.path))
        diffs = [what for what, key, mine in (("model", "model_hash", self.header.model),
                                             ("data", "data_hash", self.header.data),
                                             ("settings", "settings_hash", self.header.settings))
                 if head.get(key) != mine]
        if diffs:
            detail = ""
            if "settings" in diffs:
                old = head.get("settings", {})
                changed = sorted(k for k in set(old) | set(self.header.detail)
                                 if old.get(k) != self.header.detail.get(k))
                detail = f" (changed: {', '.join(changed)})" if changed else ""
            raise UsageError(f"cannot resume: the journal was written for a different {' and '.join(diffs)}"
                             f"{detail}; use a new output directory, or drop --resume to start afresh",
                             str(self.path))
        for n, line in enumerate(complete[1:], start=2):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise UsageError(f"cannot resume: line {n} of the journal is not JSON", str(self.path)) from None
            self.records[int(rec["index"])] = rec

    def append(self, record: dict[str, Any]) -> None:
        self.records[int(record["index"])] = record
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
