"""The model's weights named by their content, for every fingerprint made from them (records, residual files,
steering units): a copied or moved data folder, or a second clone sharing one, then resumes everything, while
other weights under the same name are never taken for the old ones.

- A local folder (the embedded model under ``data/models``, a ``save_pretrained`` folder): the SHA-256 of its
  files' names and bytes. A file that is a link into a Hugging Face cache's ``blobs/`` is named by its blob,
  which the hub already names by the SHA-256 of its content, so it is not read again.
- A hub id: the id at the commit ``from_pretrained`` resolved (``config._commit_hash``), which pins every file;
  without one, the local cache's snapshot of it, hashed as a folder (its large files are named by their blobs).
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path
from typing import Any

_BLOB = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 24


def weights_identity(weights: str, model: Any) -> str:
    """``sha256:...`` of a local folder's files, or ``id@commit`` of a hub model; raises where neither is known."""
    folder = Path(weights).expanduser()
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        stats = tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        return folder_digest(str(folder.resolve()), stats)
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    if commit:
        return f"{weights}@{commit}"
    return weights_identity(_cached_snapshot(weights), model)


def _cached_snapshot(repo_id: str) -> str:
    """The local cache's snapshot folder of a hub model (no network), whose files name their content."""
    from huggingface_hub import snapshot_download  # a hub id only: a folder needs no hub client

    try:
        return str(snapshot_download(repo_id, local_files_only=True))
    except Exception as error:  # the hub client raises several types for "not cached" and "not a repo id"
        raise ValueError(
            f"the weights {repo_id!r} are neither a local folder nor a hub model in the local cache: "
            f"nothing names their content ({type(error).__name__}: {error})"
        ) from error


@cache
def folder_digest(folder: str, stats: tuple[tuple[str, int, int], ...]) -> str:
    """The folder's digest; ``stats`` (name, size, mtime of each file) key the cache, so a changed file is read
    again and an unchanged one once per process."""
    digest = hashlib.sha256()
    for name, _size, _mtime in stats:
        path = Path(folder) / name
        digest.update(name.encode() + b"\0" + _file_digest(path).encode() + b"\n")
    return "sha256:" + digest.hexdigest()


def _file_digest(path: Path) -> str:
    target = path.resolve()
    if target.parent.name == "blobs" and _BLOB.fullmatch(target.name):
        return target.name  # a hub cache blob: its name is its content's SHA-256
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
