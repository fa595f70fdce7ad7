"""``pva-clean-data``: delete the study's outputs under ``data/`` (all of it, or named phase folders).

    pva-clean-data --dry-run              # list what would go, with sizes
    pva-clean-data phase1_0 phase1_2      # asks y/N first
    pva-clean-data --force                # no question

Only entries inside the data folder are ever removed: a named target that resolves outside it (``..``, a
symlink) is refused, a symlink found inside is removed as a link and never followed, and a data folder that
contains the project or a home folder is refused outright.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from pva_dagster.study.layout import DATA_DIR_ENV, PROJECT_ROOT, default_data_root


class CleanError(ValueError):
    """A request the command refuses to carry out; nothing has been deleted."""


@dataclass(frozen=True)
class Target:
    path: Path  # inside the data folder, not resolved (a symlink stays the link)
    size_bytes: int
    kind: str  # "dir", "file" or "link"


def _size(path: Path) -> int:
    """Bytes of the files under ``path`` (lstat: links count as links, never followed)."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for folder, dirs, files in os.walk(path, followlinks=False):
        links = [name for name in dirs if os.path.islink(os.path.join(folder, name))]
        total += sum(os.lstat(os.path.join(folder, name)).st_size for name in files + links)
    return total


def _check_data_dir(data_dir: Path) -> Path:
    root = data_dir.resolve()
    if not root.is_dir():
        raise CleanError(f"data folder {data_dir} does not exist or is not a folder")
    protected = {Path(root.anchor), PROJECT_ROOT.resolve(), Path.home().resolve()}
    for place in protected:
        if place == root or place.is_relative_to(root):
            raise CleanError(f"refusing to clean {root}: it contains {place}")
    return root


def plan(data_dir: Path, phases: list[str]) -> list[Target]:
    """What would be deleted: the named entries of the data folder, or all of them."""
    root = _check_data_dir(data_dir)
    entries = [root / name for name in phases] if phases else sorted(root.iterdir())
    targets = []
    for entry in entries:
        if not entry.exists() and not entry.is_symlink():
            raise CleanError(f"{entry.name!r} does not exist under {root}")
        resolved = entry.resolve()
        if resolved == root or not resolved.is_relative_to(root):
            raise CleanError(f"refusing {entry}: it resolves to {resolved}, not inside {root}")
        kind = "link" if entry.is_symlink() else "dir" if entry.is_dir() else "file"
        targets.append(Target(entry, _size(entry), kind))
    return targets


def delete(targets: list[Target]) -> None:
    for target in targets:
        if target.kind == "dir":
            shutil.rmtree(target.path)  # the fd-based rmtree removes inner symlinks without following them
        else:
            target.path.unlink()


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pva-clean-data", description=__doc__.splitlines()[0])
    parser.add_argument(
        "phases", nargs="*", help="entries of the data folder to delete, e.g. phase1_0 (default: all)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help=f"default: ${DATA_DIR_ENV} or <project>/data"
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted and stop")
    parser.add_argument("--force", action="store_true", help="delete without asking")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_data_root()
    try:
        targets = plan(data_dir, args.phases)
    except CleanError as error:
        print(f"pva-clean-data: {error}", file=sys.stderr)
        return 2
    if not targets:
        print(f"{data_dir} is already empty.")
        return 0
    root = data_dir.resolve()
    for target in targets:
        suffix = "/" if target.kind == "dir" else " (symlink, not followed)" if target.kind == "link" else ""
        print(f"{_human(target.size_bytes):>10}  {target.path.relative_to(root)}{suffix}")
    total = _human(sum(target.size_bytes for target in targets))
    if args.dry_run:
        print(f"dry run: would delete {len(targets)} entries ({total}) under {root}; nothing deleted.")
        return 0
    if not args.force:
        try:
            answer = input(f"Delete {len(targets)} entries ({total}) under {root}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.")
            return 1
    delete(targets)
    print(f"Deleted {len(targets)} entries ({total}) under {root}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
