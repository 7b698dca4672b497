"""The local data directory and the private files in it, made for the current user alone.

The data directory (``.im_task`` by default) holds the development secret,
the local queue and the local payloads: signed envelopes, and the key that
signs them. A directory im-task makes for them is created ``0700`` with a
``.gitignore`` of ``*`` (so ``git status`` never offers the secret for a
commit); its SQLite files are created ``0600`` before SQLite opens them, and
SQLite gives its ``-wal``, ``-shm`` and ``-journal`` files the mode of the
database. A data directory an older version made ``0755`` is tightened to
``0700`` when the current user owns it, and given the ``.gitignore``.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from im_task.datadir import make_data_dir, make_private_file
    >>> data_dir = make_data_dir(Path(tempfile.mkdtemp()) / ".im_task")
    >>> oct(data_dir.stat().st_mode & 0o777), (data_dir / ".gitignore").read_text().splitlines()[-1]
    ('0o700', '*')
    >>> oct(make_private_file(data_dir / "queue.sqlite3").stat().st_mode & 0o777)
    '0o600'
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from im_task.errors import ConfigurationError

__all__ = [
    "DATA_DIR_NAME",
    "GITIGNORE_TEXT",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "SECRET_FILE",
    "make_data_dir",
    "make_file_dir",
    "make_private_file",
    "owned_by_me",
]

logger = logging.getLogger("im_task")

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: The default data directory's name (``names.DEFAULT_DATA_DIR``): an existing one is always im-task's.
DATA_DIR_NAME = ".im_task"
#: The development secret's file in the data directory: a directory holding one is im-task's.
SECRET_FILE = "secret"
GITIGNORE_TEXT = "# Made by im-task: the local secret, queue and payloads stay out of version control.\n*\n"
#: The files SQLite makes next to a database, with the database's mode.
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def owned_by_me(info: os.stat_result) -> bool:
    """Whether a file's ``stat`` says the current (effective) user owns it; always true where there are no uids."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid is None or info.st_uid == geteuid()


def make_data_dir(path: Path) -> Path:
    """Makes (or adopts) a data directory: ``0700``, with a ``.gitignore`` of ``*``.

    Missing parents are made with the usual mode. An existing directory is
    tightened to ``0700`` and given the ``.gitignore`` if it has none; one
    that another user owns (through a symbolic link too) is refused, as ssh
    refuses such a ``~/.ssh``: its owner could read the queue and plant tasks.

    Args:
        path: The directory.

    Returns:
        ``path``.

    Raises:
        ConfigurationError: ``path`` exists and is not a directory, belongs to another user, or cannot be made.
    """
    if not isinstance(path, Path):
        raise ConfigurationError(f"make_data_dir() takes a pathlib.Path, not {type(path).__name__}.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=PRIVATE_DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise ConfigurationError(
                f"The im-task data directory {str(path)!r} exists and is not a directory: move it away, "
                "or set data_dir (IM_TASK_DATA_DIR) to another path."
            ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"The im-task data directory {str(path)!r} cannot be made ({exc.strerror or exc}): "
            "set data_dir (IM_TASK_DATA_DIR) to a writable path."
        ) from exc
    info = path.stat()  # the directory itself, or what a symbolic link points to
    if not owned_by_me(info):
        raise ConfigurationError(
            f"The im-task data directory {str(path)!r} belongs to another user (uid {info.st_uid}), who could read "
            "its queue and plant tasks in it: set data_dir (IM_TASK_DATA_DIR) to a directory of your own, or remove "
            "this one if it should not be there."
        )
    _tighten(path, PRIVATE_DIR_MODE)
    _add_gitignore(path)
    return path


def make_file_dir(path: Path) -> None:
    """Makes the directory of a private file, as a data directory when im-task makes it.

    A missing directory is made by :func:`make_data_dir`. An existing one is
    adopted as a data directory only when it is plainly im-task's: named
    ``.im_task`` or holding the local secret. Any other existing directory
    (``/tmp``, a project folder a file was put in) is left as it is.

    Args:
        path: The file whose directory to make.

    Raises:
        ConfigurationError: As :func:`make_data_dir`.
    """
    directory = Path(path).parent
    if not directory.exists() or directory.name == DATA_DIR_NAME or (directory / SECRET_FILE).is_file():
        make_data_dir(directory)


def make_private_file(path: Path) -> Path:
    """Creates a file ``0600`` if it is missing, or tightens it (and its SQLite companions) to ``0600``.

    Call it before SQLite opens a database: SQLite then keeps the file's
    mode and gives it to the ``-wal``, ``-shm`` and ``-journal`` files it
    makes. An existing file is only tightened if the current user owns it.
    A path that cannot be opened is left for the caller's own open to
    report (SQLite names the problem in its own words).

    Args:
        path: The file.

    Returns:
        ``path``.

    Raises:
        ConfigurationError: The file belongs to another user.
    """
    path = Path(path)
    if str(path) == ":memory:":  # SQLite's in-memory database: no file
        return path
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, PRIVATE_FILE_MODE)
    except OSError:
        return path
    try:
        info = os.fstat(fd)
        if not owned_by_me(info):
            raise ConfigurationError(
                f"The im-task database {str(path)!r} belongs to another user (uid {info.st_uid}), who could read "
                "its tasks and plant others: move it away, or set data_dir (IM_TASK_DATA_DIR) to a directory of "
                "your own."
            )
        if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
            os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
    for suffix in _SQLITE_COMPANIONS:
        _tighten(path.with_name(path.name + suffix), PRIVATE_FILE_MODE)
    return path


def _tighten(path: Path, mode: int) -> None:
    """Removes group and other access from a file or directory the current user owns; no-op otherwise."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077 or not owned_by_me(info):
        return
    try:
        os.chmod(path, mode)
    except OSError as exc:
        logger.warning("im-task could not make %s private (chmod %o): %s", path, mode, exc)


def _add_gitignore(directory: Path) -> None:
    """Writes ``.gitignore`` (``*``) into a data directory that has none."""
    target = directory / ".gitignore"
    if target.exists() or target.is_symlink():
        return
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    except FileExistsError:
        return  # another process wrote it
    except OSError as exc:
        logger.warning("im-task could not write %s (the data directory may be offered to git): %s", target, exc)
        return
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(GITIGNORE_TEXT)
