"""Fuzzing the slide reader (tests/support/fuzz.py): mutated real slides (a pyramidal TIFF and an
Aperio-style SVS) go through the upload's check (OpenSlide opens them and reads every level), and
mutated ZIP archives through the safe extraction. Each is accepted or refused with IngestError."""

from __future__ import annotations

import io
import zipfile

from hypothesis import given
from hypothesis import strategies as st

from plugins.pathology_viewer import ingest
from plugins.pathology_viewer.tests.support import generic_tiff, svs
from tests.support.fuzz import FUZZ, bounded, mutations

TIFF = generic_tiff().read_bytes()
SVS = svs().read_bytes()


def _zip_seed() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("slide/Slidedat.ini", "[GENERAL]\nSLIDE_VERSION = 01.02\n")
        zf.writestr("slide/Data0000.dat", b"\x00" * 2048)
        zf.writestr("slide.mrxs", b"x" * 64)
    return buf.getvalue()


ZIP = _zip_seed()


@FUZZ
@given(st.sampled_from([TIFF[:300_000], SVS[:300_000]]).flatmap(lambda seed: mutations(seed, max_edits=10)))
def test_mutated_slides_are_accepted_or_refused(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "slide.tiff"
    path.write_bytes(raw)
    with bounded("pathology validate"):
        try:
            facts = ingest.validate(path)
        except ingest.IngestError as exc:
            assert exc.status in (413, 415, 422) and str(exc)
            return
    assert facts["width"] > 0 and facts["height"] > 0


@FUZZ
@given(mutations(ZIP, max_edits=10) | st.binary(max_size=2048).map(lambda b: b"PK\x03\x04" + b))
def test_mutated_archives_are_extracted_safely_or_refused(tmp_path_factory, raw):
    folder = tmp_path_factory.mktemp("fuzz")
    archive = folder / "upload.zip"
    archive.write_bytes(raw)
    dest = folder / "out"
    with bounded("safe_extract"):
        try:
            written = ingest.safe_extract(archive, dest, limit=10 * 1024 * 1024)
        except ingest.IngestError as exc:
            assert str(exc)
            return
    assert written <= 10 * 1024 * 1024
    assert all(folder in p.resolve().parents for p in dest.rglob("*"))  # nothing outside the folder
