"""Writing files into a Hugging Face hub cache exactly as ``huggingface_hub`` lays it out after a download.

``{HF_HOME}/hub/{models|datasets}--{org}--{name}/`` holds ``blobs/<sha256>`` (the file contents),
``snapshots/<commit>/<path>`` (relative symlinks to the blobs) and ``refs/main`` (the commit). With
``HF_HUB_OFFLINE=1``, ``hf_hub_download`` / ``from_pretrained`` / ``SAE.from_pretrained`` resolve ``main``
through ``refs/main`` and read the snapshot, so files put here load as if they had been downloaded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

REPO_TYPES = ("model", "dataset")


def hub_cache_dir(hf_home: Path) -> Path:
    """The hub cache under ``HF_HOME`` (``huggingface_hub.constants.HF_HUB_CACHE`` when HF_HOME is set)."""
    return Path(hf_home) / "hub"


def repo_folder(hf_home: Path, repo_type: str, repo_id: str) -> Path:
    """``models--org--name`` / ``datasets--org--name`` under the hub cache."""
    if repo_type not in REPO_TYPES:
        raise ValueError(f"unknown repo type {repo_type!r}; expected one of {REPO_TYPES}")
    if repo_id.count("/") != 1:
        raise ValueError(f"repo id {repo_id!r} is not of the form 'org/name'")
    return hub_cache_dir(hf_home) / f"{repo_type}s--{repo_id.replace('/', '--')}"


def write_snapshot(hf_home: Path, repo_type: str, repo_id: str, files: Mapping[str, Path]) -> Path:
    """Put ``files`` ({path in the repo: local file}) into the cache as one commit of ``repo_id``'s ``main``.

    The commit hash is derived from the contents, so the same files give the same snapshot. Returns the
    snapshot folder. Files already in the cache as blobs are not copied again.
    """
    if not files:
        raise ValueError(f"no files to put into the cache for {repo_id}")
    folder = repo_folder(hf_home, repo_type, repo_id)
    blobs = folder / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, source in sorted(files.items()):
        data = Path(source).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        blob = blobs / digest
        if not blob.is_file():
            staging = blob.with_suffix(".incomplete")  # huggingface_hub's own suffix for partial downloads
            staging.write_bytes(data)
            staging.rename(blob)
        digests[name] = digest
    commit = hashlib.sha1("".join(f"{n}\0{d}\n" for n, d in sorted(digests.items())).encode()).hexdigest()
    snapshot = folder / "snapshots" / commit
    for name, digest in digests.items():
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blobs / digest, link.parent))
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return snapshot


def write_snapshot_folder(hf_home: Path, repo_type: str, repo_id: str, local_dir: Path) -> Path:
    """Every file under ``local_dir`` (paths relative to it), as one snapshot of ``repo_id``."""
    local_dir = Path(local_dir)
    files = {p.relative_to(local_dir).as_posix(): p for p in sorted(local_dir.rglob("*")) if p.is_file()}
    return write_snapshot(hf_home, repo_type, repo_id, files)
