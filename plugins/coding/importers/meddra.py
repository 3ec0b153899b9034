"""MedDRA's ASCII distribution (the ``MedAscii`` folder of a subscriber's download).

Files are ``$``-separated with a trailing ``$``, CRLF line ends, UTF-8 or Latin-1:
``soc.asc``, ``hlgt.asc``, ``hlt.asc``, ``pt.asc``, ``llt.asc`` (the terms), the links
``soc_hlgt.asc``, ``hlgt_hlt.asc``, ``hlt_pt.asc`` (or, when they are missing, ``mdhier.asc``,
whose first column is the PT), and ``meddra_release.asc`` (version and language) when present.
A line with another number of fields than the file's layout is an error naming file and line.

The model: every level is a concept of kind soc, hlgt, hlt, pt or llt, linked to its parents
(PTs and everything above are multiaxial: a PT sits under HLTs of several SOCs; ``primary_soc``
in its properties names the primary one). Lowest level terms are concepts of kind "llt" with
their PT as parent, not synonyms of the PT, because MedDRA is coded at the LLT level: a
report records the LLT closest to the reporter's words and analysis rolls it up to the PT. A
synonym would lose the LLT's own code and currency. The LLT that carries its PT's own code and
name is the PT itself and is not added twice. A non-current LLT (``llt_currency`` N) is inactive.
"""

from __future__ import annotations

from pathlib import Path

from plugins.coding.importers._common import Concepts, detect_encoding
from plugins.coding.release import ConceptIn, Progress, Release, ReleaseError, make_release

#: Fields per line (the trailing ``$`` does not count).
LAYOUT = {
    "soc.asc": 10, "hlgt.asc": 9, "hlt.asc": 9, "pt.asc": 11, "llt.asc": 11,
    "soc_hlgt.asc": 2, "hlgt_hlt.asc": 2, "hlt_pt.asc": 2, "mdhier.asc": 12,
}
TERMS = ("soc.asc", "hlgt.asc", "hlt.asc", "pt.asc", "llt.asc")
LINKS = {"soc_hlgt.asc": ("hlgt", "soc"), "hlgt_hlt.asc": ("hlt", "hlgt"), "hlt_pt.asc": ("pt", "hlt")}
LANGUAGES = {
    "english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "czech": "cs", "hungarian": "hu", "japanese": "ja", "chinese": "zh", "russian": "ru",
    "korean": "ko", "greek": "el", "swedish": "sv", "danish": "da", "polish": "pl", "latvian": "lv",
}


def _find(folder: Path) -> dict[str, Path]:
    """The ``.asc`` files by lower-case name, in the folder or its ``MedAscii`` subfolder."""
    found: dict[str, Path] = {}
    for candidate in (folder, folder / "MedAscii", folder / "medascii", folder / "ascii"):
        if candidate.is_dir():
            for p in candidate.iterdir():
                if p.suffix.lower() == ".asc":
                    found.setdefault(p.name.lower(), p)
    return found


def _rows(path: Path, expected: int | None) -> list[tuple[int, list[str]]]:
    raw = path.read_bytes()
    if not raw.strip():
        raise ReleaseError(f"{path.name}: the file is empty.")
    text = raw.decode(detect_encoding(path))
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("$")
        if fields and fields[-1] == "":
            fields.pop()
        if expected is not None and len(fields) != expected:
            raise ReleaseError(
                f"{path.name}: line {number}: {len(fields)} $-separated fields, expected {expected} for {path.name}."
            )
        rows.append((number, [f.strip() for f in fields]))
    return rows


def read(folder: Path, *, version: str | None = None, key: str = "MedDRA", progress: Progress | None = None) -> Release:
    folder = Path(folder)
    if not folder.is_dir():
        raise ReleaseError(f"{folder}: MedDRA is imported from its ASCII folder (MedAscii), not from a file.")
    files = _find(folder)
    missing = [f for f in TERMS if f not in files]
    if missing:
        raise ReleaseError(f"{folder.name}: {', '.join(missing)} missing: not a MedDRA ASCII folder.")
    concepts = Concepts(folder.name)
    level: dict[str, str] = {}
    total = sum(files[f].stat().st_size for f in files if f in LAYOUT)
    done = 0

    def rows(filename: str) -> list[tuple[int, list[str]]]:
        nonlocal done
        out = _rows(files[filename], LAYOUT.get(filename))
        done += files[filename].stat().st_size
        if progress is not None:
            progress(min(done, total), total)
        return out

    def add(filename: str, number: int, code: str, name: str, kind: str, **props) -> None:
        if not code.isdecimal():
            raise ReleaseError(f"{filename}: line {number}: a MedDRA code is a number, not {code!r}.")
        concepts.add(ConceptIn(code=code, display=name, kind=kind, properties={k: v for k, v in props.items() if v}), f"{filename} line {number}")
        level[code] = kind

    parents: list[tuple[str, str]] = []
    for number, f in rows("soc.asc"):
        add("soc.asc", number, f[0], f[1], "soc", abbreviation=f[2])
    for number, f in rows("hlgt.asc"):
        add("hlgt.asc", number, f[0], f[1], "hlgt")
    for number, f in rows("hlt.asc"):
        add("hlt.asc", number, f[0], f[1], "hlt")
    for number, f in rows("pt.asc"):
        add("pt.asc", number, f[0], f[1], "pt", primary_soc=f[3])
    for number, f in rows("llt.asc"):
        code, name, pt, currency = f[0], f[1], f[2], f[9].upper()
        if level.get(pt) != "pt":
            raise ReleaseError(f"llt.asc: line {number}: LLT {code} names PT {pt}, which is not in pt.asc.")
        if code == pt:
            continue  # the PT's own LLT: the PT itself
        add("llt.asc", number, code, name, "llt")
        concepts.items[-1].active = currency != "N"
        parents.append((code, pt))

    links = [f for f in LINKS if f in files]
    if links:
        for filename in links:
            child_kind, parent_kind = LINKS[filename]
            for number, (parent, child) in rows(filename):
                if level.get(parent) != parent_kind or level.get(child) != child_kind:
                    raise ReleaseError(
                        f"{filename}: line {number}: links {parent_kind.upper()} {parent} and {child_kind.upper()} {child}, "
                        "one of which is not in the term files."
                    )
                parents.append((child, parent))
    elif "mdhier.asc" in files:
        for number, f in rows("mdhier.asc"):
            pt, hlt, hlgt, soc = f[:4]
            for child, parent, kinds in ((pt, hlt, ("pt", "hlt")), (hlt, hlgt, ("hlt", "hlgt")), (hlgt, soc, ("hlgt", "soc"))):
                if (level.get(child), level.get(parent)) != kinds:
                    raise ReleaseError(f"mdhier.asc: line {number}: {kinds[0].upper()} {child} or {kinds[1].upper()} {parent} is not in the term files.")
                parents.append((child, parent))
    else:
        raise ReleaseError(f"{folder.name}: neither the link files (soc_hlgt.asc, hlgt_hlt.asc, hlt_pt.asc) nor mdhier.asc: no hierarchy.")

    file_version, language = "", "en"
    if "meddra_release.asc" in files:
        release_rows = _rows(files["meddra_release.asc"], None)
        if release_rows:
            fields = release_rows[0][1]
            file_version = fields[0] if fields else ""
            language = LANGUAGES.get(fields[1].lower(), "en") if len(fields) > 1 else "en"
    source = f"{folder.name}/ (MedDRA ASCII, {len(concepts):,} terms)"
    return make_release(
        key, version or file_version, source, concepts=concepts.items, parents=list(dict.fromkeys(parents)), language=language,
    )
