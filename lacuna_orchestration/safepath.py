"""File arguments that cannot lead outside the places they are meant to come from.

The CLI reads files named on its command line (events to ingest, a schema to classify, a
config). Those names are not always typed by the person running it: a dbt wrapper, a CI job or
a scheduler builds them from project files, run metadata or a web form. ``../../etc/shadow``,
an absolute path, a symlink planted in the project that points elsewhere, ``/dev/zero`` or a
FIFO (a read that never ends), a multi-gigabyte file: each would make Lacuna read what it
should not, or hang. So a file argument is accepted only when, *after* resolving every symlink:

* it lies inside one of the allowed roots (by default the working directory — the project; a
  deployment adds more, e.g. a shared events folder);
* it is a regular file (not a directory, device, FIFO or socket);
* it is no larger than ``max_bytes``;
* its name holds no NUL character.

The file is then opened without following a final symlink and checked again on the open
descriptor (same inode as resolved, still a regular file), so swapping it for a link between
the check and the read does not help. Everything else is refused with a one-line
``ValidationError`` that shows the argument escaped (a name cannot smuggle terminal control
sequences into the message).

>>> import os, tempfile
>>> root = tempfile.mkdtemp()
>>> _ = open(os.path.join(root, "events.json"), "w").write("{}")
>>> read_file("events.json", roots=[root], base=root)
b'{}'
>>> read_file("../../etc/passwd", roots=[root], base=root)  # doctest: +ELLIPSIS
Traceback (most recent call last):
  ...
lacuna_orchestration.errors.ValidationError: '../../etc/passwd': outside the allowed directories (...); path traversal refused
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from lacuna_orchestration.errors import ValidationError

__all__ = ["DEFAULT_MAX_BYTES", "read_file", "resolve_file"]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""Large enough for an NDJSON file of many events (one event is at most 8 MiB)."""

_ROOTS_SHOWN = 3


def _roots(roots: Sequence[str | os.PathLike[str]] | None, base: Path) -> list[Path]:
    chosen = [base] if roots is None else [Path(r) for r in roots]
    resolved = []
    for root in chosen:
        root = root if root.is_absolute() else base / root
        try:
            resolved.append(root.resolve(strict=True))
        except (OSError, RuntimeError):
            continue  # an allowed root that does not exist allows nothing
    return resolved


def _describe(roots: Sequence[Path]) -> str:
    shown = ", ".join(str(r) for r in roots[:_ROOTS_SHOWN])
    if len(roots) > _ROOTS_SHOWN:
        shown += f" and {len(roots) - _ROOTS_SHOWN} more"
    return shown or "none"


def resolve_file(
    arg: str | os.PathLike[str],
    *,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    base: str | os.PathLike[str] | None = None,
) -> Path:
    """The real path of the regular file ``arg`` names, if it lies inside ``roots``.

    Relative arguments are taken from ``base`` (default: the working directory), as a shell
    would; ``roots=None`` allows ``base`` alone. Raises ``ValidationError``.
    """
    text = os.fspath(arg)
    if isinstance(text, bytes):
        raise ValidationError(f"{text!r}: file names must be text")
    if not text:
        raise ValidationError("an empty file name was given")
    if "\x00" in text:
        raise ValidationError(f"{text!r}: a file name cannot contain a NUL character")
    here = Path(base) if base is not None else Path.cwd()
    allowed = _roots(roots, here)
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = here / candidate
    try:
        real = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise ValidationError(f"{text!r}: no such file") from None
    except (OSError, RuntimeError) as err:  # a symlink loop, a permission problem
        reason = getattr(err, "strerror", None) or str(err)
        raise ValidationError(f"{text!r}: cannot be resolved: {reason}") from None
    if not any(real == root or real.is_relative_to(root) for root in allowed):
        raise ValidationError(
            f"{text!r}: outside the allowed directories ({_describe(allowed)}); "
            "path traversal refused"
        )
    try:
        mode = real.stat().st_mode
    except OSError as err:
        raise ValidationError(f"{text!r}: cannot be read: {err.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ValidationError(f"{text!r}: not a regular file ({_kind(mode)})")
    return real


def read_file(
    arg: str | os.PathLike[str],
    *,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    base: str | os.PathLike[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """The bytes of the file ``arg`` names, under the rules of :func:`resolve_file` and no
    more than ``max_bytes`` of them (``ValidationError`` otherwise)."""
    text = os.fspath(arg)
    real = resolve_file(arg, roots=roots, base=base)
    expected = real.stat()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(real, flags)
    except OSError as err:
        raise ValidationError(f"{text!r}: cannot be opened: {err.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        opened = os.fstat(handle.fileno())
        if (opened.st_dev, opened.st_ino) != (expected.st_dev, expected.st_ino) or not (
            stat.S_ISREG(opened.st_mode)
        ):
            raise ValidationError(f"{text!r}: the file changed while it was being opened")
        if opened.st_size > max_bytes:
            raise ValidationError(
                f"{text!r}: {opened.st_size:,} bytes; the limit is {max_bytes:,} bytes"
            )
        data = handle.read(max_bytes + 1)  # a file growing after fstat stops here too
    if len(data) > max_bytes:
        raise ValidationError(f"{text!r}: larger than the limit of {max_bytes:,} bytes")
    return data


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"
