"""Result files: atomic writes and schema-checked reads.

Every JSON the suite writes carries ``schema`` and ``kind``. Writes go to a temporary file
in the same folder and are renamed into place, so a killed run never leaves a half file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = 1


class ResultFileError(ValueError):
    """A result file is missing, truncated, not ours, or of another schema (CLI exit 2)."""


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def read_result(path: str | os.PathLike[str], kind: str | None = None,
                schemas: tuple[int, ...] = (SCHEMA,)) -> dict[str, Any]:
    """Load one of our JSON files, or ResultFileError with a one-line reason naming the file.

    ``schemas``: the versions the caller can read (bench files: suite.bench.schema.READABLE)."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultFileError(f"{source}: cannot read ({exc.strerror or exc})") from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{source}: not valid JSON (truncated or corrupt at line {exc.lineno})") from exc
    if not isinstance(payload, dict) or "schema" not in payload:
        raise ResultFileError(f"{source}: not a dropbench result file (no 'schema' field)")
    if payload["schema"] not in schemas:
        readable = " or ".join(str(s) for s in schemas)
        raise ResultFileError(f"{source}: schema {payload['schema']!r} is not supported (this dropbench reads "
                              f"schema {readable})")
    if kind is not None and payload.get("kind") != kind:
        raise ResultFileError(f"{source}: a {payload.get('kind')!r} file, expected {kind!r}")
    return payload


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """The complete lines of a JSON-lines log a worker appends to; a line cut short by a crash is skipped."""
    source = Path(path)
    if not source.exists():
        return []
    entries = []
    for line in source.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries
