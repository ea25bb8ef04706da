"""results.json: written atomically after every variant, read back to resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..errors import ArtifactExistsError, FormatError
from ..io.atomic import atomic_text

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
SCHEMA = 2  # 2: unstructured rows timed through to_sparse, with their sparse records


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path``, replacing it atomically."""
    atomic_text(path, json.dumps(data, indent=2) + "\n", overwrite=True)


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def settings_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Each setting that differs, as ``name: old -> new`` (missing values shown as None)."""
    before, after = _flatten(old), _flatten(new)
    return [f"{key}: {before.get(key)!r} -> {after.get(key)!r}"
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]


def finished_names(data: dict[str, Any]) -> list[str]:
    """Names of the finished rows of a results document (dense, control, variants)."""
    rows = [data.get("dense"), data.get("control"), *data.get("variants", {}).values()]
    return [r["name"] for r in rows
            if isinstance(r, dict) and r.get("status") == "done" and "name" in r]


class ResultStore:
    """The run's results, kept on disk as each variant finishes.

    Layout: ``{"schema", "settings", "environment", "dense", "control",
    "variants": {name: row}}``.
    """

    def __init__(self, out_dir: Path, settings: dict[str, Any]) -> None:
        self.path = out_dir / RESULTS_FILE
        self.data: dict[str, Any] = {"schema": SCHEMA, "settings": settings, "environment": {},
                                     "dense": None, "control": None, "variants": {}}

    def previous(self) -> dict[str, Any] | None:
        """The results document already in the folder, or None.

        Raises:
            FormatError: results.json exists but is not readable JSON.
        """
        if not self.path.is_file():
            return None
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise FormatError(f"cannot read {self.path}: {exc}",
                              "delete it (or pick another --out) to start afresh") from exc
        if not isinstance(old, dict):
            raise FormatError(f"{self.path} is not a results document",
                              "delete it (or pick another --out) to start afresh")
        return old

    def check(self, *, fresh: bool = False) -> list[str]:
        """Refuse to run over finished results made with other settings, unless ``fresh``.

        Args:
            fresh: discard whatever the folder holds and start afresh.

        Returns:
            The finished results that starting will discard (empty: nothing is lost).

        Raises:
            ArtifactExistsError: the folder holds finished results made with other settings
                (or another results format) and ``fresh`` is not set; names the settings
                that differ and the fix.
            FormatError: results.json is unreadable.
        """
        old = self.previous()
        if old is None:
            return []
        done = finished_names(old)
        if fresh:
            return done
        changes = settings_changes(old.get("settings", {}), self.data["settings"])
        if old.get("schema") != SCHEMA:
            changes.insert(0, f"results format: {old.get('schema')!r} -> {SCHEMA!r}")
        if changes and done:
            raise ArtifactExistsError(
                f"{self.path} holds results made with other settings "
                f"({'; '.join(changes)}); they cannot be resumed",
                f"pick another --out, or pass --fresh to discard its {len(done)} finished "
                f"result(s): {', '.join(done)}")
        return []

    def resume(self, *, fresh: bool = False) -> list[str]:
        """Load earlier results made with the same settings; return the variants reused.

        Args:
            fresh: discard earlier results instead (logged, naming what is discarded).

        Raises:
            ArtifactExistsError: earlier results were made with other settings and
                ``fresh`` is not set (see :meth:`check`).
            FormatError: results.json exists but is not readable JSON.
        """
        discarded = self.check(fresh=fresh)
        if discarded:
            log.warning("--fresh: discarding the finished results in %s: %s (their saved "
                        "models stay under models/ until a rerun overwrites them)", self.path,
                        ", ".join(discarded))
        old = self.previous()
        if (fresh or old is None or old.get("schema") != SCHEMA
                or old.get("settings") != self.data["settings"]):
            return []
        self.data["dense"] = old.get("dense")
        control = old.get("control")
        self.data["control"] = control if (control or {}).get("status") == "done" else None
        done = {k: v for k, v in old.get("variants", {}).items() if v.get("status") == "done"}
        self.data["variants"].update(done)
        return list(done)

    def put_dense(self, row: dict[str, Any]) -> None:
        self.data["dense"] = row
        self.save()

    def put_control(self, row: dict[str, Any]) -> None:
        self.data["control"] = row
        self.save()

    def put_variant(self, name: str, row: dict[str, Any]) -> None:
        self.data["variants"][name] = row
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self.data)
