"""One archive per device run: the run folder packed as ``<machine-id>/<stamp>/...``, and read back.

Why: the GPU machine returns a few files of at most 16 MiB, at most two folders deep, while a run's
folder (results/<machine>/<stamp>/report/plots/...) is deeper. ``tar -xzf gpu-run.tar.gz -C results``
puts it where a committed run lies; `dropbench report` reads the archive itself or its unpacked folder.
"""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

from suite.runtime.loader import UsageError

ARCHIVE_NAME = "gpu-run.tar.gz"
MAX_BYTES = 16 * 2**20
"""What one returned file may weigh (the GPU machine's limit)."""
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def pack(run_dir: Path, archive: Path) -> Path:
    """``run_dir`` (…/<machine-id>/<stamp>) into ``archive`` as <machine-id>/<stamp>/…, written atomically."""
    run_dir = Path(run_dir).resolve()
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(run_dir, arcname=f"{run_dir.parent.name}/{run_dir.name}")
    os.replace(partial, archive)
    return archive


def _safe_members(tar: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    """Regular files and folders inside ``dest`` only: an archive from elsewhere cannot write outside it."""
    members = []
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if not (member.isfile() or member.isdir()) or os.path.isabs(member.name) or not target.is_relative_to(dest):
            raise UsageError(f"{tar.name}: refusing the archive member {member.name!r} (not a plain file inside the archive)")
        members.append(member)
    return members


def unpack(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` (plain files and folders only); returns ``dest``."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, members=_safe_members(tar, dest))  # noqa: S202 - members checked above
    except (tarfile.TarError, OSError) as exc:
        raise UsageError(f"cannot read the archive {str(archive)!r}: {exc}") from None
    return dest


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVE_SUFFIXES)


RUN_RESULT_FILES = ("bench.json", "verify.json", "probe.json")  # what a run folder holds for the report's page


def result_files(paths: list[Path], scratch: Path) -> list[Path]:
    """The result files behind ``paths``: a JSON file as is; a run folder's (any depth) or an archive's (after
    unpacking it into ``scratch``) bench.json, verify.json and probe.json, so the page gets all three answers.
    UsageError for a folder or archive that holds none of them."""
    out: list[Path] = []
    for i, path in enumerate(paths):
        path = Path(path)
        if path.is_file() and is_archive(path):
            root = unpack(path, Path(scratch) / f"archive-{i}")
        elif path.is_dir():
            root = path
        else:
            out.append(path)  # a file (or a missing path: the loader says so)
            continue
        found = sorted(f for name in RUN_RESULT_FILES for f in root.rglob(name))
        if not found:
            raise UsageError(f"{str(path)!r} holds no {', '.join(RUN_RESULT_FILES)} "
                             "(a folder or archive of `dropbench run` / .ci/gpu-run)")
        out.extend(found)
    return out
