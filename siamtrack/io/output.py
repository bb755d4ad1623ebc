"""Output files that are whole or absent: checked paths, an exclusive lock, temp file + atomic rename.

Why: a tracking run can end by a full disk, a kill signal or a second run writing the same path.
Each output is written to a hidden temporary file next to its target (same folder, so the final
``os.replace`` is atomic) and only renamed into place when the run ends; a lock file next to the
target (``fcntl.flock``) makes a second run on the same path fail at once instead of interleaving.
Every failure is an ``OSError`` / ``ValueError`` whose one-line message names the file and the cause.
"""
from __future__ import annotations

import errno
import os
from glob import escape as glob_escape
from pathlib import Path
from types import TracebackType

try:  # POSIX only; elsewhere runs are simply not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Video containers OpenCV's FFmpeg backend writes, with the codecs to try in order.
VIDEO_CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("avc1", "mp4v"), ".m4v": ("avc1", "mp4v"), ".mov": ("avc1", "mp4v"),
    ".mkv": ("avc1", "mp4v"), ".avi": ("MJPG", "XVID"),
}


def write_error(path: Path | str, what: str, exc: BaseException | int) -> OSError:
    """One-line ``OSError`` naming ``what`` (``"boxes"``/``"video"``), the file and the cause."""
    code = exc if isinstance(exc, int) else getattr(exc, "errno", None)
    cause = os.strerror(code) if code else (str(exc) or type(exc).__name__)
    if code == errno.ENOSPC:
        cause += " (disk full)"
    err = OSError(f"cannot write {what} {path}: {cause}")
    err.errno = code  # type: ignore[assignment]
    return err


def is_special(path: Path) -> bool:
    """An existing non-regular file (``/dev/null``, ``/dev/full``, a FIFO): written in place, no
    temporary file, lock or overwrite check (there is nothing to rename)."""
    return path.exists() and not path.is_dir() and not path.is_file()


def check_output_path(path: Path, what: str, overwrite: bool, video: bool = False) -> None:
    """Refuse an output that cannot be written, saying why (before any tracking or file is made).

    Missing folders are created later, so only a parent that exists as a file, or a folder without
    write permission, is an error; an existing output needs ``overwrite``.
    """
    option = "--output" if video else "--boxes"
    if is_special(path):
        return
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name, e.g. {path / ('out' + ('.mp4' if video else '.txt'))}")
    if video and path.suffix.lower() not in VIDEO_CODECS:
        raise ValueError(f"{option} {path}: unknown video extension {path.suffix or '(none)'!r}; "
                         f"use one of {', '.join(VIDEO_CODECS)} (or --no-video)")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {path}: no permission to write in folder {parent}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{what} {path} exists; pass --overwrite to replace it, or choose another {option}")


def temp_path(path: Path) -> Path:
    """Hidden per-process temporary name next to ``path``, keeping its extension (OpenCV picks the
    container from it)."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's live process
        return True
    return True


def sweep_stale_temps(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` (:func:`temp_path`) left by runs whose process is gone
    (SIGKILL, power loss: no code of theirs ran to clean up); returns what was removed.

    Called by the run that holds ``path``'s lock, so no live run can be writing them; a file of a
    live process (a PID reused, a run without locks) is left alone all the same.
    """
    path = Path(path)
    prefix, removed = f".{path.stem}.partial-", []
    try:
        candidates = list(path.parent.glob(f"{glob_escape(prefix)}*{glob_escape(path.suffix)}"))
    except OSError:
        return removed
    for tmp in candidates:
        pid = tmp.name[len(prefix):len(tmp.name) - len(path.suffix)]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            os.unlink(tmp)
            removed.append(tmp)
        except OSError:
            pass
    return removed


class OutputLock:
    """Exclusive, non-blocking ``flock`` on ``.<name>.lock`` next to ``path``; a second holder fails.
    Once held, the temporary files dead runs left for ``path`` are removed (:func:`sweep_stale_temps`).

    The lock file is removed on release; a lock taken on a file that another run unlinked meanwhile
    is retried, so two runs can never both hold the lock for one path.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = Path(path), what
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        if fcntl is None or is_special(self.path):
            return self
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise BlockingIOError(f"{self.what} {self.path} is being written by another run "
                                      f"(lock {self.lock_path} is held); wait for it to finish or "
                                      f"choose another path") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                sweep_stale_temps(self.path)  # what a killed earlier run on this path left
                return self
            os.close(fd)  # the previous holder removed the file between our open and flock

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.lock_path)  # while still holding the lock: see acquire's retry
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class RowFile:
    """Text rows written with checked ``os.write`` into a temporary file, renamed into place by
    :meth:`commit`.

    A failed or short write truncates the file back to the last whole row (no torn row) and raises
    a one-line ``OSError`` naming the file; the rows written before stay valid and can still be
    committed.
    """

    def __init__(self, path: Path, what: str = "boxes") -> None:
        self.path, self.what = Path(path), what
        self.special = is_special(self.path)
        self.tmp = self.path if self.special else temp_path(self.path)
        self.rows = 0
        self._good = 0  # bytes of whole rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | (0 if self.special else os.O_CREAT | os.O_TRUNC)
        try:
            self._fd: int | None = os.open(self.tmp, flags, 0o666)
        except OSError as exc:
            raise write_error(self.path, what, exc) from None

    def write(self, text: str) -> None:
        """Append one row (``text`` ends with a newline); all of it or, on failure, none of it."""
        assert self._fd is not None, "RowFile already closed"
        data = text.encode("utf-8")
        done = 0
        try:
            while done < len(data):
                n = os.write(self._fd, data[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
        except OSError as exc:
            if not self.special:
                try:
                    os.ftruncate(self._fd, self._good)  # needs no free space
                    os.lseek(self._fd, self._good, os.SEEK_SET)
                except OSError:
                    pass
            raise write_error(self.path, self.what, exc) from None
        self._good += done
        self.rows += 1

    def commit(self) -> None:
        """Flush to disk and rename into place (atomic: readers see the old file or the whole new one)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if not self.special:
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self.discard()
            raise write_error(self.path, self.what, exc) from None
        os.close(fd)
        if not self.special:
            os.replace(self.tmp, self.path)

    def discard(self) -> None:
        """Close and remove the temporary file (the target is left as it was)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self.special:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass


def disk_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has no block left for this user.

    OpenCV's video writer does not report failed writes, so the writer asks this after each frame.
    """
    try:
        st = os.statvfs(path.parent if not path.is_dir() else path)
    except (OSError, AttributeError):
        return False
    free = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return st.f_blocks > 0 and free == 0
