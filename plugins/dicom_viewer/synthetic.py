"""Synthetic DICOM files for tests and the benchmark, written with pydicom.

Every file carries identifying attributes set to the ``MARKERS`` strings (patient name, ID, birth
date, institution, referring physician, accession number, private tags, nested sequences ...), so
a test can look for them in the bytes of a de-identified file. Pixel values are deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
SC_MULTIFRAME_GRAY = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word SC
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"
XA_IMAGE = "1.2.840.10008.5.1.4.1.1.12.1"

MARKERS = {
    "PatientName": "Markerson^Zebedee",
    "PatientID": "MRN-ZX-918273",
    "PatientBirthDate": "19610423",
    "InstitutionName": "Sankt Markerus Hospital",
    "InstitutionAddress": "7 Markerweg, Markerstadt",
    "ReferringPhysicianName": "Refmarker^Quentin",
    "AccessionNumber": "ACC-MARK-5521",
    "OtherPatientIDs": "OTHERID-MARK-64",
    "OperatorsName": "Opmarker^Ulla",
    "StationName": "STATION-MARK-9",
    "DeviceSerialNumber": "SERIAL-MARK-3141",
    "StudyDescription": "STUDYDESC-MARK",
    "PatientAddress": "12 Privatstrasse, Markerdorf",
    "PatientTelephoneNumbers": "+4930-555-12345",
    "PerformingPhysicianName": "Perfmarker^Otto",
    "RequestedProcedureID": "REQPROC-MARK-77",
    "private": "PRIVATE-MARK-7731",
}
STUDY_DATE = "20240315"
IDENTIFYING = [v for k, v in MARKERS.items()]


def _base(sop_class: str, modality: str, study_uid: str, series_uid: str, *, instance: int = 1,
          frame_of_reference: str | None = None) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    sop_uid = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_of_reference or generate_uid()
    ds.Modality = modality
    ds.StudyDate = STUDY_DATE
    ds.SeriesDate = STUDY_DATE
    ds.AcquisitionDate = STUDY_DATE
    ds.ContentDate = STUDY_DATE
    ds.InstanceCreationDate = STUDY_DATE
    ds.StudyTime = "101530"
    ds.SeriesTime = "101531"
    ds.AcquisitionTime = "101532.250"
    ds.ContentTime = "101533"
    ds.AcquisitionDateTime = STUDY_DATE + "101532.250000"
    ds.StudyID = "STUDYID-1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.Manufacturer = "CPMS synthetic"
    ds.SeriesDescription = "synthetic series"
    for key, value in MARKERS.items():
        if key != "private":
            setattr(ds, key, value)
    ds.PatientSex = "F"
    ds.PatientAge = "062Y"
    ds.PatientWeight = 71.5
    ds.IssuerOfPatientID = "MARKER-ISSUER"
    # nested identifying data
    req = Dataset()
    req.RequestedProcedureID = MARKERS["RequestedProcedureID"]
    req.ScheduledProcedureStepID = "SPS-1"
    ds.RequestAttributesSequence = Sequence([req])
    person = Dataset()
    person.PersonName = MARKERS["PerformingPhysicianName"]
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref_study.ReferencedSOPInstanceUID = study_uid
    ds.ReferencedStudySequence = Sequence([ref_study])
    block = ds.private_block(0x0009, "MARKERCORP 1.0", create=True)
    block.add_new(0x01, "LO", MARKERS["private"])
    block.add_new(0x02, "SH", MARKERS["PatientID"])
    nested = Dataset()
    nested.add_new(0x00091010, "LO", "MARKERCORP 1.0")
    nested.add_new(0x00091001, "LO", MARKERS["private"])
    ds.add_new(0x00091003, "SQ", Sequence([nested]))
    ds.BurnedInAnnotation = "NO"
    return ds


def _image(ds: Dataset, arr: np.ndarray, photometric: str, bits_stored: int) -> Dataset:
    ds.set_pixel_data(arr, photometric, bits_stored, generate_instance_uid=False)
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ct_pixels(size: int = 512, slice_index: int = 0) -> np.ndarray:
    """HU phantom: air outside a water disc (0 HU) with bone (+1000) and fat (-100) inserts, as stored
    values (HU + 1024, uint16), with a deterministic ramp so slices differ."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    r = np.hypot(x - c, y - c)
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    hu[r < size * 0.42] = 0.0
    hu[np.hypot(x - c * 0.6, y - c) < size * 0.06] = 1000.0
    hu[np.hypot(x - c * 1.4, y - c) < size * 0.06] = -100.0
    hu += ((x + y + 3 * slice_index) % 17) - 8  # texture
    return (hu + 1024).clip(0, 4095).astype(np.uint16)


def ct_slice(path: Path, *, study_uid: str, series_uid: str, frame_of_reference: str, index: int = 0,
             size: int = 512, previous_sop: str | None = None) -> Path:
    ds = _base(CT_IMAGE, "CT", study_uid, series_uid, instance=index + 1, frame_of_reference=frame_of_reference)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 2.5
    ds.ImagePositionPatient = [-179.2, -179.2, -2.5 * index]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.KVP = 120
    if previous_sop:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CT_IMAGE
        ref.ReferencedSOPInstanceUID = previous_sop
        ds.ReferencedImageSequence = Sequence([ref])
    _image(ds, ct_pixels(size, index), "MONOCHROME2", 12)
    return _save(ds, path)


def ct_series(directory: Path, n: int = 5, size: int = 512, study_uid: str | None = None) -> list[Path]:
    """``n`` CT slices of one series (one study) in ``directory``; each references the previous one."""
    study_uid = study_uid or generate_uid()
    series_uid, frame_of_reference = generate_uid(), generate_uid()
    paths: list[Path] = []
    previous = None
    from pydicom import dcmread
    for i in range(n):
        p = ct_slice(Path(directory) / f"ct_{i:04d}.dcm", study_uid=study_uid, series_uid=series_uid,
                     frame_of_reference=frame_of_reference, index=i, size=size, previous_sop=previous)
        previous = str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        paths.append(p)
    return paths


def cr_monochrome1(path: Path, size: int = 256) -> Path:
    """A CR image in MONOCHROME1 (higher values darker), 10-bit, ImagerPixelSpacing only."""
    ds = _base(CR_IMAGE, "CR", generate_uid(), generate_uid())
    ds.ImagerPixelSpacing = [0.15, 0.15]
    ds.WindowCenter = 512
    ds.WindowWidth = 1024
    arr = np.tile(np.linspace(0, 1023, size, dtype=np.float32), (size, 1)).astype(np.uint16)
    _image(ds, arr, "MONOCHROME1", 10)
    return _save(ds, path)


def us_rgb(path: Path, size: tuple[int, int] = (240, 320)) -> Path:
    """An RGB ultrasound image whose Burned In Annotation is absent (so the gate holds it)."""
    ds = _base(US_IMAGE, "US", generate_uid(), generate_uid())
    del ds.BurnedInAnnotation
    rows, cols = size
    arr = np.zeros((rows, cols, 3), dtype=np.uint8)
    arr[..., 0] = np.arange(cols, dtype=np.uint8)[None, :]
    arr[..., 1] = np.arange(rows, dtype=np.uint8)[:, None]
    arr[..., 2] = 200
    arr[5:25, 5:120] = 255  # a white "name banner"
    _image(ds, arr, "RGB", 8)
    return _save(ds, path)


def multiframe(path: Path, frames: int = 10, size: int = 64) -> Path:
    """A multi-frame 16-bit grayscale secondary capture; frame f holds the value 100 * (f + 1)."""
    ds = _base(SC_MULTIFRAME_GRAY, "OT", generate_uid(), generate_uid())
    ds.ConversionType = "WSD"
    arr = np.stack([np.full((size, size), 100 * (f + 1), dtype=np.uint16) for f in range(frames)])
    arr[:, 0, 0] = 0
    arr[:, -1, -1] = 4095
    _image(ds, arr, "MONOCHROME2", 12)
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 40.0
    return _save(ds, path)


def large16(path: Path, size: int = 2048) -> Path:
    """A 2048x2048 16-bit (all bits stored) unsigned DX-like image with PixelSpacing."""
    ds = _base(DX_IMAGE, "DX", generate_uid(), generate_uid())
    ds.PixelSpacing = [0.1, 0.1]
    ds.PresentationIntentType = "FOR PRESENTATION"
    y, x = np.mgrid[0:size, 0:size]
    arr = ((x * 13 + y * 7) % 65536).astype(np.uint16)
    arr[size // 4: size // 2, size // 4: size // 2] = 60000
    ds.WindowCenter = 32768
    ds.WindowWidth = 65536
    _image(ds, arr, "MONOCHROME2", 16)
    return _save(ds, path)
