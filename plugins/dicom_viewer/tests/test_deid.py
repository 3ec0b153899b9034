"""De-identification: the Basic Profile table, pseudonym, UIDs, dates, private tags, report,
the burned-in annotation gate and Clean Pixel Data masking."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from plugins.dicom_viewer import deid, synthetic
from plugins.dicom_viewer.deid import BASIC_PROFILE, deidentify, mask_regions, method_codes, needs_pixel_review

KEY = b"site-key-charite-0001"
PSEUDONYM = "PABCDEFGHJK2"


def walk(ds: Dataset):
    """Every element, recursively into sequences."""
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk(item)


def load(path) -> Dataset:
    return pydicom.dcmread(path)


def saved_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def ct(tmp_path_factory) -> list[Path]:
    return synthetic.ct_series(tmp_path_factory.mktemp("ct"), n=3, size=64)


def test_every_profile_keyword_is_a_dicom_attribute():
    assert len(BASIC_PROFILE) > 300
    for tag, rule in BASIC_PROFILE.items():
        assert keyword_for_tag(tag) == rule.keyword
        assert set(rule.action.split("/")) <= {"X", "Z", "D", "U", "U*", "K", "C"}, rule
    # spot checks of the standard's table
    by_kw = {r.keyword: r.action for r in BASIC_PROFILE.values()}
    assert by_kw["PatientName"] == "Z" and by_kw["PatientID"] == "Z/D" and by_kw["PatientBirthDate"] == "Z"
    assert by_kw["InstitutionName"] == "X/Z/D" and by_kw["ReferencedImageSequence"] == "X/Z/U*"
    assert by_kw["StudyInstanceUID"] == "U" and by_kw["OtherPatientIDs"] == "X"
    assert by_kw["AccessionNumber"] == "Z" and by_kw["ContentDate"] == "Z/D"


def check_profile(ds: Dataset, dates: str = "shift") -> None:
    """No attribute of the Basic Profile survives with its original content. Under the Modified Dates
    option only the study's, series', acquisition's and content's dates and times keep a value (the
    dates shifted: checked elsewhere); every other date or time (birth date and time, instance
    creation, calibration ...) is treated per the table like any attribute."""
    for elem in walk(ds):
        assert not elem.tag.is_private, f"private {elem.tag} survived"
        assert not (0x5000 <= elem.tag.group <= 0x50FF), "curve data survived"
        rule = BASIC_PROFILE.get(int(elem.tag))
        if rule is None or elem.keyword in ("PatientName", "PatientID"):
            continue
        action = rule.effective
        if dates == "shift" and elem.keyword in deid.LONGITUDINAL:
            assert elem.keyword.startswith(("Study", "Series", "Acquisition", "Content", "Frame", "Start", "End"))
            continue  # kept (shifted) under the Modified Dates option; checked elsewhere
        assert action != "X", f"{elem.keyword} ({rule.action}) survived"
        if action == "Z":
            assert elem.value in (None, "", b"") or (elem.VR == "SQ" and len(elem.value) == 0), elem
        if action == "D" and elem.VR != "SQ":
            dummies = (deid._DUMMY_TEXT, deid._DUMMY_DATE, deid._DUMMY_TIME, deid._DUMMY_DATE + deid._DUMMY_TIME, 0)
            assert elem.value in dummies or elem.VR == "UI", elem
        if action == "U":
            values = [elem.value] if isinstance(elem.value, str) else list(elem.value)
            assert all(str(v).startswith("2.25.") for v in values), elem


def test_no_basic_profile_attribute_survives_and_no_marker_in_the_bytes(ct):
    original = load(ct[1])
    assert original.PatientName == synthetic.MARKERS["PatientName"]
    ds = load(ct[1])
    report = deidentify(ds, pseudonym=PSEUDONYM, site_key=KEY, day_offset=-123)
    check_profile(ds)
    data = saved_bytes(ds)
    for marker in synthetic.IDENTIFYING:
        assert marker.encode() not in data, marker
    assert synthetic.MARKERS["PatientName"].split("^")[0].encode() not in data
    assert str(original.SOPInstanceUID).encode() not in data
    assert str(original.StudyInstanceUID).encode() not in data
    assert synthetic.STUDY_DATE.encode() not in data
    again = pydicom.dcmread(io.BytesIO(data))
    assert again.PatientName == PSEUDONYM and again.PatientID == PSEUDONYM
    assert again.PatientIdentityRemoved == "YES"
    assert "PatientBirthDate" not in again or again.PatientBirthDate in ("", None)
    actions = report.actions()
    assert actions["PatientName"] == "replaced" and actions["InstitutionName"] == "removed"
    assert actions["AccessionNumber"] == "emptied" and actions["StudyInstanceUID"] == "remapped"
    assert actions["StudyDate"] == "shifted"
    assert actions["RequestAttributesSequence"] == "removed"
    assert any(a == "private removed" for _, a in report.entries)
    assert ("ReferencedImageSequence>ReferencedSOPInstanceUID", "remapped") in report.entries
    # the pixels are untouched
    assert np.array_equal(again.pixel_array, original.pixel_array)


def test_every_shipped_pydicom_file_is_cleaned():
    """All readable instances shipped with pydicom, de-identified: nothing of the profile survives."""
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtstruct.dcm", "rtdose.dcm", "test-SR.dcm",
             "nested_priv_SQ.dcm", "priv_SQ.dcm", "waveform_ecg.dcm", "examples_overlay.dcm",
             "JPEG2000.dcm", "reportsi.dcm", "SC_rgb_rle.dcm", "liver_1frame.dcm"]
    for name in names:
        ds = pydicom.dcmread(get_testdata_file(name), force=True)
        patient = str(ds.get("PatientName", ""))
        deidentify(ds, pseudonym=PSEUDONYM, site_key=KEY, day_offset=10)
        check_profile(ds)
        if len(patient) > 3:
            assert patient.encode() not in saved_bytes(ds), name


def test_uids_consistent_across_a_study_and_per_site(ct):
    a, b = load(ct[0]), load(ct[1])
    deidentify(a, pseudonym=PSEUDONYM, site_key=KEY)
    deidentify(b, pseudonym=PSEUDONYM, site_key=KEY)
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    # b references a (the previous slice): the reference follows the mapping
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.file_meta.MediaStorageSOPInstanceUID == b.SOPInstanceUID
    for uid in (a.StudyInstanceUID, a.SOPInstanceUID):
        assert uid.startswith("2.25.") and len(uid) <= 64 and all(p.isdigit() for p in uid.split("."))
    # a second upload of the same file maps identically
    again = load(ct[0])
    deidentify(again, pseudonym=PSEUDONYM, site_key=KEY)
    assert again.SOPInstanceUID == a.SOPInstanceUID
    # another site key: other UIDs
    other = load(ct[0])
    deidentify(other, pseudonym=PSEUDONYM, site_key=b"another-site")
    assert other.StudyInstanceUID != a.StudyInstanceUID and other.SOPInstanceUID != a.SOPInstanceUID
    assert a.SOPClassUID == synthetic.CT_IMAGE  # well-known UIDs are not remapped


def test_dates_shifted_by_the_offset(ct):
    ds = load(ct[0])
    deidentify(ds, pseudonym=PSEUDONYM, site_key=KEY, day_offset=-20)
    assert ds.StudyDate == "20240224" and ds.SeriesDate == "20240224" and ds.ContentDate == "20240224"
    assert ds.AcquisitionDateTime == "20240224101532.250000"
    assert ds.StudyTime == "101530"  # times of day are kept
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert method_codes(ds) == ["113100", "113107"]
    assert "PatientBirthDate" not in ds or not ds.PatientBirthDate
    assert deid.shift_date("20240229", 366) == "20250301"
    assert deid.shift_date("2024", 1) is None


def _dated(ct_path) -> Dataset:
    """The synthetic CT with every kind of date and time the table lists, nested ones too."""
    ds = load(ct_path)
    ds.PatientBirthDate = "19610423"
    ds.PatientBirthTime = "071500"
    ds.InstanceCreationDate = "20240315"
    ds.InstanceCreationTime = "101400"
    ds.AdmittingDate = "20240310"
    ds.AdmittingTime = "0800"
    ds.LastMenstrualDate = "20240201"
    ds.DateOfLastCalibration = "20240101"
    ds.TimeOfLastCalibration = "120000"
    ds.PerformedProcedureStepStartDate = "20240315"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.PresentationCreationDate = "20240316"  # X (2024b)
    ds.PresentationCreationTime = "090000"
    ds.RadiopharmaceuticalStartTime = "093000"  # X/D
    ds.TimezoneOffsetFromUTC = "+0100"
    item = Dataset()
    item.PatientBirthTime = "071500"
    item.FrameAcquisitionDateTime = "20240315101532"
    item.ReviewDate = "20240320"  # Z
    ds.VerifyingObserverSequence = [item]  # D: kept, its items cleaned
    return ds


def test_only_longitudinal_dates_are_kept_under_the_modified_dates_option(ct):
    assert deid.LONGITUDINAL <= {r.keyword for r in BASIC_PROFILE.values()}
    assert "PatientBirthTime" not in deid.LONGITUDINAL and "InstanceCreationDate" not in deid.LONGITUDINAL
    ds = _dated(ct[0])
    report = deidentify(ds, pseudonym=PSEUDONYM, site_key=KEY, day_offset=-20)
    check_profile(ds)
    for kw in ("PatientBirthTime", "InstanceCreationDate", "InstanceCreationTime", "AdmittingDate", "AdmittingTime",
               "LastMenstrualDate", "DateOfLastCalibration", "TimeOfLastCalibration", "PerformedProcedureStepStartDate",
               "PerformedProcedureStepStartTime", "RadiopharmaceuticalStartTime", "TimezoneOffsetFromUTC",
               "PresentationCreationDate", "PresentationCreationTime"):
        assert kw not in ds, kw  # X
    assert ds.get("PatientBirthDate") in ("", None)  # Z
    nested = ds.VerifyingObserverSequence[0]
    assert "PatientBirthTime" not in nested and nested.get("ReviewDate") in ("", None)
    assert nested.FrameAcquisitionDateTime == "20240224101532"  # shifted
    # the study's, series', acquisition's and content's dates shifted, their times kept
    assert ds.StudyDate == ds.SeriesDate == ds.AcquisitionDate == ds.ContentDate == "20240224"
    assert (ds.StudyTime, ds.SeriesTime, ds.AcquisitionTime, ds.ContentTime) == ("101530", "101531", "101532.250", "101533")
    actions = report.actions()
    assert actions["PatientBirthTime"] == "removed" and actions["InstanceCreationDate"] == "removed"
    assert actions["PatientBirthDate"] == "emptied" and actions["StudyDate"] == "shifted"
    data = saved_bytes(ds)
    for value in (b"071500", b"101400", b"20240310", b"20240201", b"19610423", b"+0100"):
        assert value not in data, value
    # the same under dates="remove"
    removed = _dated(ct[0])
    deidentify(removed, pseudonym=PSEUDONYM, site_key=KEY, day_offset=-20, dates="remove")
    check_profile(removed, dates="remove")
    assert "PatientBirthTime" not in removed and "InstanceCreationDate" not in removed


def test_dates_removed_when_configured(ct):
    ds = load(ct[0])
    report = deidentify(ds, pseudonym=PSEUDONYM, site_key=KEY, day_offset=-20, dates="remove")
    check_profile(ds, dates="remove")
    assert ds.StudyDate in ("", None)  # Z
    assert "AcquisitionDate" not in ds and "SeriesDate" not in ds and "AcquisitionDateTime" not in ds
    assert ds.ContentDate in ("", None)
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert method_codes(ds) == ["113100"]
    assert synthetic.STUDY_DATE.encode() not in saved_bytes(ds)
    assert report.actions()["SeriesDate"] == "removed"
    with pytest.raises(ValueError):
        deidentify(load(ct[0]), pseudonym=PSEUDONYM, site_key=KEY, dates="keep")


def test_private_tags_gone_recursively(ct):
    ds = load(ct[0])
    assert any(e.tag.is_private for e in walk(ds))
    deidentify(ds, pseudonym=PSEUDONYM, site_key=KEY)
    assert not any(e.tag.is_private for e in walk(ds))
    nested = pydicom.dcmread(get_testdata_file("nested_priv_SQ.dcm"))
    deidentify(nested, pseudonym=PSEUDONYM, site_key=KEY)
    assert not any(e.tag.is_private for e in walk(nested))


def test_method_sequence_codes(ct):
    ds = load(ct[0])
    deidentify(ds, pseudonym=PSEUDONYM, site_key=KEY)
    seq = ds.DeidentificationMethodCodeSequence
    assert [(i.CodeValue, i.CodingSchemeDesignator) for i in seq] == [("113100", "DCM"), ("113107", "DCM")]
    assert seq[0].CodeMeaning == "Basic Application Confidentiality Profile"
    assert ds.DeidentificationMethod == "CPMS PS3.15 Annex E: Basic, Modified Dates"


def test_study_report_aggregates(ct):
    reports = []
    for p in ct:
        ds = load(p)
        reports.append(deidentify(ds, pseudonym=PSEUDONYM, site_key=KEY))
    studies = deid.study_reports(reports)
    assert len(studies) == 1
    (study,) = studies.values()
    assert study.instances == 3
    rows = {(r["attribute"], r["action"]): r["instances"] for r in study.rows()}
    assert rows[("InstitutionName", "removed")] == 3
    assert rows[("PatientID", "replaced")] == 3
    assert rows[("ReferencedImageSequence>ReferencedSOPInstanceUID", "remapped")] == 2  # not on the first slice


def test_nested_identifying_attributes_cleaned():
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4"
    item = Dataset()
    item.PatientName = "Nested^Secret"
    item.OtherPatientIDs = "NESTED-ID"
    item.PersonName = "Observer^Secret"
    ds.VerifyingObserverSequence = [item]  # D: kept, cleaned
    ds.SourceImageSequence = [Dataset()]
    ds.SourceImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4"
    ds.add_new(0x50000010, "US", 1)  # curve data
    ds.add_new(0x60003000, "OW", b"\0\1")  # overlay data
    ds.add_new(0x60000010, "US", 8)  # overlay rows: not in the table, kept
    deidentify(ds, pseudonym=PSEUDONYM, site_key=KEY)
    nested = ds.VerifyingObserverSequence[0]
    assert nested.PatientName in ("", None) and "OtherPatientIDs" not in nested and nested.PersonName == "ANONYMIZED"
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert 0x50000010 not in ds and 0x60003000 not in ds and 0x60000010 in ds


# --- burned-in annotation gate -----------------------------------------------------------------

def gate(**attrs) -> bool:
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return needs_pixel_review(ds)


def test_pixel_gate_rules(tmp_path):
    assert gate(Modality="CT", BurnedInAnnotation="YES")
    assert not gate(Modality="CT")
    assert not gate(Modality="MR", BurnedInAnnotation="NO")
    for modality in ("US", "SC", "OT", "XC", "DOC"):
        assert gate(Modality=modality), modality
        assert not gate(Modality=modality, BurnedInAnnotation="NO"), modality
    assert gate(Modality="CT", SOPClassUID="1.2.840.10008.5.1.4.1.1.7")  # secondary capture
    assert gate(Modality="MR", SOPClassUID="1.2.840.10008.5.1.4.1.1.7.4")  # multi-frame true colour SC
    assert gate(Modality="", SOPClassUID="1.2.840.10008.5.1.4.1.1.104.1")  # encapsulated PDF
    assert not gate(Modality="CT", SOPClassUID="1.2.840.10008.5.1.4.1.1.2")
    assert needs_pixel_review(load(synthetic.us_rgb(tmp_path / "us.dcm")))
    ct = load(synthetic.ct_slice(tmp_path / "ct.dcm", study_uid="1.2.3", series_uid="1.2.3.1",
                                 frame_of_reference="1.2.3.2", size=32))
    assert not needs_pixel_review(ct)


# --- Clean Pixel Data --------------------------------------------------------------------------

def test_mask_multiframe_every_frame_and_rest_kept(tmp_path):
    ds = load(synthetic.multiframe(tmp_path / "mf.dcm", frames=4, size=32))
    before = ds.pixel_array.copy()
    deidentify(ds, pseudonym=PSEUDONYM, site_key=KEY)
    n = mask_regions(ds, [(2, 3, 5, 4), (30, 30, 10, 10)])  # the second is clipped to 2x2
    assert n == 20 + 4
    again = pydicom.dcmread(io.BytesIO(saved_bytes(ds)))
    after = again.pixel_array
    mask = np.zeros((32, 32), bool)
    mask[3:7, 2:7] = True
    mask[30:, 30:] = True
    assert (after[:, mask] == 0).all()
    assert np.array_equal(after[:, ~mask], before[:, ~mask])
    assert again.BurnedInAnnotation == "NO"
    assert method_codes(again) == ["113100", "113107", "113101"]


def test_mask_rgb_and_compressed_input_becomes_uncompressed():
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    before = ds.pixel_array.copy()
    mask_regions(ds, [(10, 20, 30, 5)])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    after = pydicom.dcmread(io.BytesIO(saved_bytes(ds))).pixel_array
    assert after.shape == before.shape == (2, 100, 100, 3)
    assert (after[:, 20:25, 10:40] == 0).all()
    untouched = np.ones((100, 100), bool)
    untouched[20:25, 10:40] = False
    assert np.array_equal(after[:, untouched], before[:, untouched])
    assert method_codes(ds) == ["113100", "113101"]

    jpeg = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))  # YBR_FULL_422 JPEG baseline
    mask_regions(jpeg, [(0, 0, 10, 10)])
    assert jpeg.PhotometricInterpretation == "RGB" and not jpeg.file_meta.TransferSyntaxUID.is_compressed
    assert (pydicom.dcmread(io.BytesIO(saved_bytes(jpeg))).pixel_array[:10, :10] == 0).all()


def test_mask_monochrome1_and_signed_use_black(tmp_path):
    cr = load(synthetic.cr_monochrome1(tmp_path / "cr.dcm", size=16))
    mask_regions(cr, [(0, 0, 4, 4)])
    assert (cr.pixel_array[:4, :4] == 1023).all()  # MONOCHROME1: the largest value is black
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))  # signed 16-bit
    mask_regions(mr, [(0, 0, 4, 4)])
    assert (mr.pixel_array[:4, :4] == -(1 << (mr.BitsStored - 1))).all()
    with pytest.raises(ValueError):
        mask_regions(mr, [(0, 0, 0, 4)])
    assert mask_regions(mr, []) == 0


def test_free_text_of_structured_reports_is_removed():
    """Stricter than the table: an SR item's text (a clinician may have typed a name) goes; its codes stay."""
    from pydicom.data import get_testdata_file

    ds = load(get_testdata_file("test-SR.dcm"))
    assert b"A mass of" in saved_bytes(ds)
    report = deidentify(ds, pseudonym=PSEUDONYM, site_key=KEY, day_offset=-20)
    check_profile(ds)
    data = saved_bytes(ds)
    assert b"A mass of" not in data and "ContentSequence" in ds
    texts = {path: action for path, action in report.actions().items() if path.endswith("TextValue")}
    assert texts and set(texts.values()) == {"removed"}
