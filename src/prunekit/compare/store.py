"""results.json: written atomically after every variant, read back to resume."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import FormatError

RESULTS_FILE = "results.json"
SCHEMA = 1


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temp file + ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ResultStore:
    """The run's results, kept on disk as each variant finishes.

    Layout: ``{"schema", "settings", "environment", "dense", "variants": {name: row}}``.
    """

    def __init__(self, out_dir: Path, settings: dict[str, Any]) -> None:
        self.path = out_dir / RESULTS_FILE
        self.data: dict[str, Any] = {"schema": SCHEMA, "settings": settings, "environment": {},
                                     "dense": None, "variants": {}}

    def resume(self) -> list[str]:
        """Load earlier results made with the same settings; return the variants reused.

        Raises:
            FormatError: results.json exists but is not readable JSON.
        """
        if not self.path.is_file():
            return []
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise FormatError(f"cannot read {self.path}: {exc}",
                              "delete it (or pick another --out) to start afresh") from exc
        if old.get("schema") != SCHEMA or old.get("settings") != self.data["settings"]:
            return []
        self.data["dense"] = old.get("dense")
        done = {k: v for k, v in old.get("variants", {}).items() if v.get("status") == "done"}
        self.data["variants"].update(done)
        return list(done)

    def put_dense(self, row: dict[str, Any]) -> None:
        self.data["dense"] = row
        self.save()

    def put_variant(self, name: str, row: dict[str, Any]) -> None:
        self.data["variants"][name] = row
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self.data)
