"""The source archive the site ships.

The site is often read where it was built, offline, with no address of a
repository to point to; so it carries the source it documents. The archive
holds the files of the tree it was built from that git would keep: in a git
checkout, the tracked files and the untracked ones ``.gitignore`` does not
exclude; elsewhere (an unpacked archive, which keeps ``.gitignore``), every
file ``.gitignore``'s patterns do not exclude.
"""

from __future__ import annotations

import fnmatch
import subprocess
import tarfile
from pathlib import Path


def _git_files(root: Path) -> list[str] | None:
    """Paths git would keep under `root`, or None outside a git work tree."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [name for name in listed.decode().split("\0") if name]


def _ignored(relative: str, is_dir: bool, patterns: list[str]) -> bool:
    """Whether one of ``.gitignore``'s simple patterns excludes `relative`.

    Handles what this repository's ``.gitignore`` uses: a trailing ``/`` for
    directories only, a pattern with an inner ``/`` anchored at the root,
    anything else matched against the last path component.
    """
    for pattern in patterns:
        if pattern.endswith("/"):
            if not is_dir:
                continue
            pattern = pattern[:-1]
        if "/" in pattern:
            if fnmatch.fnmatchcase(relative, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], pattern):
            return True
    return False


def _walked_files(root: Path) -> list[str]:
    """Files under `root` that ``.gitignore`` does not exclude (no .git)."""
    gitignore = root / ".gitignore"
    patterns = []
    if gitignore.is_file():
        for line in gitignore.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "!")):
                patterns.append(line)
    patterns.append(".git/")
    files = []
    pending = [root]
    while pending:
        folder = pending.pop()
        for path in sorted(folder.iterdir()):
            relative = path.relative_to(root).as_posix()
            if _ignored(relative, path.is_dir(), patterns):
                continue
            if path.is_dir():
                pending.append(path)
            elif path.is_file():
                files.append(relative)
    return files


def source_files(root: Path) -> list[str]:
    """The paths, relative to `root`, that make up the source tree."""
    root = Path(root)
    names = _git_files(root)
    if names is None:
        names = _walked_files(root)
    # A tracked file deleted in the work tree is not part of it.
    return sorted(name for name in names if (root / name).is_file())


def write_source_archive(root: Path, path: Path) -> Path:
    """Write the source tree under `root` to the gzipped tar file `path`.

    Its members sit under one folder named like the archive (``name-version``),
    as in a source distribution, so ``tar xzf`` and ``pip install`` both work.
    """
    root, path = Path(root).resolve(), Path(path).resolve()
    top = path.name.removesuffix(".tar.gz")
    names = source_files(root)
    # A site built into an unignored folder of the tree does not archive itself.
    if path.parent.is_relative_to(root) and path.parent != root:
        inside = path.parent.relative_to(root).as_posix() + "/"
        names = [name for name in names if not name.startswith(inside)]
    if "pyproject.toml" not in names:
        raise FileNotFoundError(
            f"write_source_archive: {root} has no pyproject.toml; pass the "
            "repository root as root"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name in names:
            archive.add(root / name, arcname=f"{top}/{name}", recursive=False)
    return path
