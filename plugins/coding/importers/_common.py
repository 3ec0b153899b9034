"""What every importer needs: files read as streams with progress, clear errors, duplicate checks."""

from __future__ import annotations

import codecs
import io
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from plugins.coding.release import ConceptIn, Progress, ReleaseError


class _Counting(io.RawIOBase):
    """A binary file that reports how far it has been read (for a progress bar)."""

    def __init__(self, raw, total: int, progress: Progress | None):
        self._raw, self._total, self._progress, self._done = raw, total, progress, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        self._done += n or 0
        if self._progress is not None:
            self._progress(min(self._done, self._total), self._total)
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_binary(path: Path, progress: Progress | None = None) -> io.BufferedReader:
    path = Path(path)
    if not path.is_file():
        raise ReleaseError(f"{path}: no such file.")
    size = path.stat().st_size
    if size == 0:
        raise ReleaseError(f"{path.name}: the file is empty.")
    return io.BufferedReader(_Counting(open(path, "rb", buffering=0), size, progress), buffer_size=1 << 16)


def detect_encoding(path: Path) -> str:
    """UTF-8 when the file decodes as UTF-8 (with or without a byte-order mark), else Latin-1
    (MedDRA and LOINC have shipped both)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as f:
        if f.read(3) == codecs.BOM_UTF8:
            return "utf-8-sig"
        f.seek(0)
        try:
            for block in iter(lambda: f.read(1 << 20), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "latin-1"
    return "utf-8"


def open_text(path: Path, progress: Progress | None = None, encoding: str | None = None) -> io.TextIOWrapper:
    path = Path(path)
    raw = open_binary(path, progress)
    return io.TextIOWrapper(raw, encoding=encoding or detect_encoding(path), newline="")


def iterparse(path: Path, source, what: str) -> Iterator[tuple[str, ET.Element]]:
    """``ElementTree.iterparse`` (start and end events) with XML errors as ReleaseErrors. Through
    defusedxml: a release file is outside input, and entity expansion ("billion laughs") or
    external entities are refused rather than expanded."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import iterparse as safe_iterparse

    try:
        yield from safe_iterparse(source, events=("start", "end"))
    except DefusedXmlException as exc:
        raise ReleaseError(f"{Path(path).name}: refused: the {what} file declares entities ({type(exc).__name__}).") from None
    except ET.ParseError as exc:
        line, column = exc.position
        raise ReleaseError(f"{Path(path).name}: line {line}, column {column}: not a well-formed {what} file ({exc.msg if hasattr(exc, 'msg') else exc}).") from None


def local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def text_of(element: ET.Element | None) -> str:
    """All the text inside an element (labels may contain markup), whitespace collapsed."""
    if element is None:
        return ""
    return " ".join("".join(element.itertext()).split())


class Concepts:
    """Concepts in file order, refusing a code met twice (with both places)."""

    def __init__(self, filename: str):
        self.filename = filename
        self.items: list[ConceptIn] = []
        self._where: dict[str, str] = {}

    def add(self, concept: ConceptIn, where: str) -> ConceptIn:
        code = concept.code
        if not code:
            raise ReleaseError(f"{self.filename}: {where}: a concept without a code.")
        if code in self._where:
            raise ReleaseError(f"{self.filename}: {where}: code {code} appears twice (first at {self._where[code]}).")
        if not (concept.display or "").strip():
            raise ReleaseError(f"{self.filename}: {where}: code {code} has no preferred term.")
        self._where[code] = where
        self.items.append(concept)
        return concept

    def __contains__(self, code: str) -> bool:
        return code in self._where

    def __len__(self) -> int:
        return len(self.items)


def file_label(path: Path) -> str:
    """How a release's source is recorded: the file name and its size."""
    path = Path(path)
    return path.name if path.is_dir() else f"{path.name} ({os.path.getsize(path):,} bytes)"
