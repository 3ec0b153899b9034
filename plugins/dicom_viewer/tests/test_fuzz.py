"""Fuzzing the DICOM reader (tests/support/fuzz.py): mutated real instances (a synthetic CT, an
ultrasound and a multi-frame file from pydicom's test data) and mutated ZIP archives of them go
through the upload classifier. Every file gets a result (ok, duplicate, refused, corrupt...), never
an exception, except the archive-level UploadRefused."""

from __future__ import annotations

import io
import zipfile

from hypothesis import given
from hypothesis import strategies as st

from plugins.dicom_viewer import files
from plugins.dicom_viewer.tests.support import ct_paths, multiframe_path, us_path
from tests.support.fuzz import FUZZ, bounded, mutations

SEEDS = [ct_paths(1, 32)[0].read_bytes(), us_path().read_bytes()[:200_000], multiframe_path().read_bytes()[:200_000]]


def _zip(members: list[bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, data in enumerate(members):
            zf.writestr(f"IM{n:04d}", data)
    return buf.getvalue()


ZIP_SEED = _zip([SEEDS[0], SEEDS[0][:1000]])


def _classify(tmp_path, raw: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(raw)
    try:
        with bounded("dicom files.ingest"):
            results = files.ingest(path, name=name)
    except files.UploadRefused as exc:
        assert str(exc)
        return
    finally:
        path.unlink()
    assert results and all(r.status and isinstance(r.message, str) for r in results)


@FUZZ
@given(st.sampled_from(SEEDS).flatmap(lambda seed: mutations(seed, max_edits=10)))
def test_mutated_dicom_files_are_classified_not_crashed_on(tmp_path_factory, raw):
    _classify(tmp_path_factory.mktemp("fuzz"), raw, "upload.dcm")


@FUZZ
@given(mutations(ZIP_SEED, max_edits=10) | st.binary(max_size=2048).map(lambda b: b"PK\x03\x04" + b))
def test_mutated_zip_archives_are_classified_or_refused(tmp_path_factory, raw):
    _classify(tmp_path_factory.mktemp("fuzz"), raw, "study.zip")
