"""Content-addressed attachment storage on disk.

The same logo or PDF arrives in thousands of mails; keying files by their
SHA-256 stores it once and makes a re-fetch after an IMAP resync free.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class AttachmentStore:
    """Files under root/ab/cd/<sha256>; written via a temp file + rename.

    The rename is atomic, so a reader or a crash never sees half a file, and
    two writers of the same content race harmlessly (both write identical bytes).
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        # Bytes in the store, counted once (a walk) and then kept up to date by
        # put(); the quota check needs it and a walk per message would be slow.
        self._used: int | None = None
        self._used_lock = threading.Lock()

    def used_bytes(self) -> int:
        with self._used_lock:
            if self._used is None:
                self._used = sum(
                    p.stat().st_size
                    for p in self.root.glob("??/??/*")
                    if p.is_file() and _SHA256.match(p.name)
                )
            return self._used

    def new_bytes(self, blobs: dict[str, bytes]) -> int:
        """What storing `blobs` (by sha256) would add: contents already stored cost nothing."""
        return sum(len(data) for digest, data in blobs.items() if not self.exists(digest))

    def path_for(self, sha256: str) -> Path:
        # Validated so that a digest coming back from the database can never escape root.
        if not _SHA256.match(sha256):
            raise ValueError(f"not a lowercase sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store data (once) and return its sha256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path_for(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            # The rename is durable only once the directory is on disk: without
            # this a power cut after the commit could lose a file the history names.
            _fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        with self._used_lock:
            if self._used is not None:
                self._used += len(data)
        return digest

    def files(self) -> Iterator[tuple[str, Path]]:
        """(sha256, path) of every stored file; temp files of unfinished writes too,
        under their own names (".tmp-…"), so a sweep can remove those as well."""
        for path in self.root.glob("??/??/*"):
            if path.is_file():
                yield path.name, path

    def remove(self, path: Path) -> int:
        """Delete one file of the store; its size (0 when it was already gone)."""
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        with self._used_lock:
            if self._used is not None and _SHA256.match(path.name):
                self._used -= size
        return size

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def read(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
