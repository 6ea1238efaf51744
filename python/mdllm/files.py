"""Atomic file output: an interrupted run leaves the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so format detection by extension
    still works); on success it is renamed onto ``path``, on any exception it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{''.join(path.suffixes)}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers such as mdtraj refuse to overwrite; let them create it
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp-style 0600 would make shipped files private; use the umask
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's contents (identities of models and tokenizers, stage keys)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
