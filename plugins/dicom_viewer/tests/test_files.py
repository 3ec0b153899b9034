"""Safe ingestion (ZIP traversal, symlinks, bombs, DICOMDIR, non-DICOM, corrupt, duplicates) and the
study/series index."""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet

from plugins.dicom_viewer import deid, synthetic
from plugins.dicom_viewer.files import (CORRUPT, DUPLICATE, MISSING, NOT_DICOM, OK, Limits, UploadRefused,
                                        ingest)
from plugins.dicom_viewer.index import build_index, instance_info


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("study")
    paths = synthetic.ct_series(root / "ct", n=3, size=32)
    paths.append(synthetic.multiframe(root / "mf.dcm", frames=3, size=16))
    return paths


def make_zip(path: Path, members: dict[str, bytes | Path], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, content in members.items():
            zf.writestr(name, content.read_bytes() if isinstance(content, Path) else content)
    return path


def bare_dataset(path: Path) -> bytes:
    """The dataset of ``path`` without preamble and file meta (as old systems write it)."""
    ds = pydicom.dcmread(path)
    del ds.file_meta
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def statuses(results) -> dict[str, str]:
    return {r.name: r.status for r in results}


def test_single_file(study):
    (result,) = ingest(study[0])
    assert result.status == OK and result.name == "ct_0000.dcm" and result.sop_instance_uid
    assert result.study_instance_uid == str(pydicom.dcmread(study[0]).StudyInstanceUID)


def test_zip_with_non_dicom_corrupt_and_duplicates(tmp_path, study):
    truncated = Path(get_testdata_file("MR_truncated.dcm"))
    cut = study[1].read_bytes()[:-500]  # pixel data cut short
    z = make_zip(tmp_path / "upload.zip", {
        "a/ct0.dcm": study[0], "a/ct1.dcm": study[1], "b/copy_of_ct0.dcm": study[0],
        "notes.txt": b"hello, not an image", "photo.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 200,
        "truncated.dcm": truncated, "cut.dcm": cut, "empty.dcm": b"",
        "no_meta.dcm": bare_dataset(study[2]), "mf.dcm": study[3],
    })
    handled = []
    results = ingest(z, handle=lambda r, ds: handled.append(r.name))
    s = statuses(results)
    assert s["a/ct0.dcm"] == OK and s["a/ct1.dcm"] == OK and s["mf.dcm"] == OK
    assert s["b/copy_of_ct0.dcm"] == DUPLICATE
    assert s["notes.txt"] == NOT_DICOM and s["photo.png"] == NOT_DICOM and s["empty.dcm"] == NOT_DICOM
    assert s["truncated.dcm"] == CORRUPT and s["cut.dcm"] == CORRUPT
    assert s["no_meta.dcm"] == OK  # a dataset without preamble or file meta is still DICOM
    assert handled == ["a/ct0.dcm", "a/ct1.dcm", "no_meta.dcm", "mf.dcm"]
    dup = next(r for r in results if r.status == DUPLICATE)
    # By position (a/ct0.dcm is the first), never by name: names may identify the patient.
    assert dup.message == "same SOP Instance UID as file 1" and dup.extra["same_as"] is results[0]
    assert not any(r.name in r.message or "ct0" in r.message for r in results)
    assert all(r.message for r in results if r.status != OK)
    again = ingest(z, known_uids={r.sop_instance_uid for r in results if r.status == OK})
    assert statuses(again)["a/ct0.dcm"] == DUPLICATE


def test_handler_failure_is_per_file(tmp_path, study):
    z = make_zip(tmp_path / "u.zip", {"0.dcm": study[0], "1.dcm": study[1]})

    def handle(result, ds):
        if result.name == "0.dcm":
            raise RuntimeError("disk full")

    s = statuses(ingest(z, handle=handle))
    assert s == {"0.dcm": CORRUPT, "1.dcm": OK}


@pytest.mark.parametrize("name,why", [("../evil.dcm", "escapes"), ("a/../../evil.dcm", "escapes"),
                                      ("/etc/passwd", "absolute"), ("C:/windows/x.dcm", "absolute"),
                                      ("..\\evil.dcm", "escapes")])
def test_zip_path_traversal_refused(tmp_path, study, name, why):
    z = make_zip(tmp_path / "evil.zip", {"ok.dcm": study[0], name: b"x"})
    handled = []
    with pytest.raises(UploadRefused, match=why) as refused:
        ingest(z, handle=lambda r, ds: handled.append(r))
    assert handled == []  # refused before any file was handled
    assert "member 2" in str(refused.value) and "evil" not in str(refused.value)  # by position, not name


def test_zip_symlink_refused(tmp_path):
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("link.dcm")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UploadRefused, match="symbolic link"):
        ingest(z)


def test_zip_bombs_refused(tmp_path, study):
    bomb = make_zip(tmp_path / "bomb.zip", {"zeros.dcm": b"\0" * (8 << 20)})
    with pytest.raises(UploadRefused, match="compression ratio"):
        ingest(bomb)
    many = make_zip(tmp_path / "many.zip", {f"{i}.txt": b"x" for i in range(30)})
    with pytest.raises(UploadRefused, match="30 members"):
        ingest(many, limits=Limits(max_members=20))
    big = make_zip(tmp_path / "big.zip", {"a.dcm": study[0], "b.dcm": study[1]})
    size = study[0].stat().st_size
    with pytest.raises(UploadRefused, match="expand to more than"):
        ingest(big, limits=Limits(max_total_bytes=size + 10))
    with pytest.raises(UploadRefused, match="limit"):
        ingest(big, limits=Limits(max_member_bytes=size - 10))
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(make_zip(tmp_path / "x.zip", {"a.dcm": study[0]}).read_bytes()[:-30])
    results = ingest(damaged)  # no longer a ZIP at all: one not-DICOM file, no crash
    assert [r.status for r in results] == [NOT_DICOM]


def test_lying_zip_header_caught_while_streaming(tmp_path, study):
    """A member whose real content is larger than its declared size is cut by zipfile (CRC error)."""
    z = make_zip(tmp_path / "lie.zip", {"a.dcm": study[0]})
    data = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.infolist()[0]
    # shrink the declared size in the central directory; the local header still says the truth
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (info.file_size // 2).to_bytes(4, "little")
    z.write_bytes(bytes(data))
    (result,) = ingest(z)
    assert result.status in (CORRUPT, NOT_DICOM)


def write_media(root: Path, files: list[Path]) -> Path:
    fs = FileSet()
    for f in files:
        fs.add(f)
    fs.write(root)
    return root


def test_dicomdir_media_folder_and_zip(tmp_path, study):
    media = write_media(tmp_path / "media", study[:3])
    (media / "AUTORUN.INF").write_text("[autorun]")  # not referenced: ignored
    results = ingest(media)
    assert [r.status for r in results] == [OK, OK, OK]
    assert all(r.name.startswith("PT") for r in results)
    # inside a ZIP (in a subfolder), and with a referenced file missing
    members = {f"CD/{p.relative_to(media).as_posix()}": p for p in media.rglob("*") if p.is_file()}
    missing = sorted(k for k in members if "/IM" in k or k.rsplit("/", 1)[-1].startswith("IM"))[0]
    del members[missing]
    z = make_zip(tmp_path / "cd.zip", members)
    s = statuses(ingest(z))
    assert sorted(s.values()) == [MISSING, OK, OK]
    assert s[missing] == MISSING


def test_dicomdir_shipped_with_pydicom(tmp_path):
    base = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests" / "TINY_ALPHA"
    shutil.copytree(base, tmp_path / "tiny")
    results = ingest(tmp_path / "tiny")
    assert len(results) > 10 and {r.status for r in results} == {OK}


def test_index_groups_studies_and_series(tmp_path, study):
    other = synthetic.ct_series(tmp_path / "other", n=2, size=16)
    infos = [instance_info(pydicom.dcmread(p, stop_before_pixels=True), str(p)) for p in study + other + study[:1]]
    studies = build_index(infos)
    assert len(studies) == 3  # the CT study, the other CT study, the multi-frame's own study
    ct = next(s for s in studies if s.instance_count == 3)
    assert ct.modalities == ["CT"] and len(ct.series) == 1
    series = ct.series[0]
    assert series.instance_count == 3 and series.frame_count == 3
    assert [i.instance_number for i in series.instances] == [1, 2, 3]
    mf = next(s for s in studies if s.modalities == ["OT"])
    assert mf.frame_count == 3 and mf.instance_count == 1
    assert ct.description == synthetic.MARKERS["StudyDescription"] and ct.date == synthetic.STUDY_DATE


def test_ingest_then_deidentify_end_to_end(tmp_path, study):
    """The flow the upload will use: every ok file is de-identified and written; the bytes are clean."""
    out = tmp_path / "store"
    out.mkdir()
    reports = []

    def store(result, ds):
        reports.append(deid.deidentify(ds, pseudonym="PXYZ", site_key=b"k", day_offset=7))
        ds.save_as(out / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)

    z = make_zip(tmp_path / "s.zip", {p.name: p for p in study})
    results = ingest(z, handle=store)
    assert [r.status for r in results] == [OK] * 4
    stored = sorted(out.iterdir())
    assert len(stored) == 4
    for p in stored:
        data = p.read_bytes()
        for marker in synthetic.IDENTIFYING:
            assert marker.encode() not in data, (p, marker)
    infos = [instance_info(pydicom.dcmread(p, stop_before_pixels=True)) for p in stored]
    assert len(build_index(infos)) == 2 and len(deid.study_reports(reports)) == 2
