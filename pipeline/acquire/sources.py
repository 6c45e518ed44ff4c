"""Local inputs: files and directories given on the command line, read as raw pages.

URLs are not read here (the fetcher does that); this module only knows the file system.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PageTooLarge, ParseError, UsageError
from pipeline.limits import MAX_PAGE_BYTES

#: File name endings read from a directory (a file named explicitly is read whatever its name).
PAGE_SUFFIXES: frozenset[str] = frozenset({".html", ".htm", ".xhtml", ".shtml"})


@dataclass(frozen=True, slots=True)
class RawPage:
    """The bytes of one page and where they came from."""

    source: str
    body: bytes
    http_charset: str | None = None


def is_url(text: str) -> bool:
    """True for an http(s) URL (the only schemes the pipeline fetches)."""
    return text.lower().startswith(("http://", "https://"))


def check_inputs(inputs: Iterable[str]) -> None:
    """Refuse, before any work, inputs that cannot work: missing paths, unknown URL schemes."""
    for item in inputs:
        if is_url(item):
            continue
        if "://" in item:
            scheme = item.split("://", 1)[0]
            raise UsageError(
                f"{item}: the {scheme}: scheme is not supported; give an http(s) URL or a path"
            )
        path = Path(item)
        if not path.exists():
            raise UsageError(f"{item}: no such file or directory; check the path")
        if not os.access(path, os.R_OK):
            raise UsageError(f"{item}: not readable; check its permissions")
        if path.is_dir() and next(_page_entries(path), None) is None:
            # A run over nothing would report "parsed 0, rejected 0" and exit 0.
            names = ", ".join(sorted(PAGE_SUFFIXES))
            raise UsageError(f"{item}: no page files ({names}) in this directory")


def expand_paths(inputs: Iterable[str]) -> Iterator[Path]:
    """Files named directly, then every page file under each directory, in sorted order.

    Under a directory, every entry whose name ends like a page and that is not itself a
    directory is yielded, even when it cannot be read (a dangling symlink, a FIFO): reading it
    then rejects it with a reason, so nothing a user put there vanishes without a trace.
    Symlinked subdirectories are followed, each real directory once (a link loop ends), but
    not into /proc, /sys or /dev.
    """
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from sorted(_page_entries(path))
        else:
            yield path


def count_inputs(inputs: Iterable[str]) -> int:
    """How many pages the inputs name: URLs, files, and the page files under directories."""
    return sum(1 if is_url(item) else sum(1 for _ in expand_paths([item])) for item in inputs)


#: Symbolic links into these are not followed: pseudo file systems (``/proc/self/root`` is "/").
_NOT_FOLLOWED = (Path("/proc"), Path("/sys"), Path("/dev"))


def _page_entries(root: Path) -> Iterator[Path]:
    """Page files under ``root``, depth first. A symlinked directory is walked unless it
    leads to a directory already walked, above the root, or into /proc, /sys or /dev (then it
    is yielded itself, so that reading it rejects it with a reason)."""
    seen: set[tuple[int, int]] = set()
    real_root = Path(os.path.realpath(root))
    stack = [root]
    while stack:
        top = stack.pop()
        info = os.stat(top)
        if (info.st_dev, info.st_ino) in seen:
            continue  # walked already: nothing new down there
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = list(os.scandir(top))
        except OSError:
            yield top  # unreadable: reading it says why
            continue
        for entry in entries:
            path = Path(entry.path)
            if _is_dir(entry):
                if entry.is_symlink() and _not_followed(Path(os.path.realpath(path)), real_root):
                    yield path
                else:
                    stack.append(path)
            elif path.suffix.lower() in PAGE_SUFFIXES:
                yield path  # a file, or a FIFO, socket or dangling link: read_page decides


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symbolic links
    except OSError:
        return False


def _not_followed(real: Path, real_root: Path) -> bool:
    """A link into a pseudo file system, or above the walk's root ("../.."), which would walk
    the root again and everything beside it. (A link to the root itself is a loop: the walk
    has been there, and passes over it.)"""
    above = real != real_root and real_root.is_relative_to(real)
    return above or any(real.is_relative_to(p) for p in _NOT_FOLLOWED)


#: Control characters are shown escaped in a page's source (a newline in a file name must not
#: forge a line of its own on stderr or in a CSV cell).
_CONTROLS = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]} | {
    0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t",
}  # fmt: skip


def source_of(path: Path) -> str:
    """A file's path as text for the record's ``source``: bytes that are not UTF-8 (a file name
    from another system) as ``\\xff`` escapes, control characters escaped, and a backslash of
    the name doubled, so that two names never share a source (a newline and a literal
    ``\\n``)."""
    raw = os.fsencode(path)
    if b"\\" in raw:
        raw = raw.replace(b"\\", b"\\\\")
    return raw.decode("utf-8", "backslashreplace").translate(_CONTROLS)


def read_page(path: Path) -> RawPage:
    """Read one page file; raises a ParseError for a file too large or unreadable."""
    source = source_of(path)
    if path.is_dir():
        raise ParseError(
            "a directory not walked (a link above the directory given, or into /proc, /sys "
            "or /dev; or unreadable)",
            source=source,
        )
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files are read,
        # and never more than the limit (a device such as /dev/zero has no size to check).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ParseError("not a regular file (a device, FIFO or socket)", source=source)
            body = file.read(MAX_PAGE_BYTES + 1)
        if len(body) > MAX_PAGE_BYTES:
            raise PageTooLarge(f"page is over the {MAX_PAGE_BYTES:,}-byte limit", source=source)
        return RawPage(source, body)
    except OSError as exc:
        raise ParseError(f"cannot read file: {exc.strerror or exc}", source=source) from exc
