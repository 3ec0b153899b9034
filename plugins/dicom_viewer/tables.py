"""De-identified DICOM studies of a patient, their series and instances, uploads and shared annotations.

Everything here was de-identified on ingestion (``deid``): UIDs are the remapped ones, dates are
shifted, names and ids are the CPMS pseudonym. The original file is never kept. Each instance's
de-identified file is stored encrypted through the core store (``file_key``).
An instance that may carry burned-in text (``deid.needs_pixel_review``) is seen only by the
uploader's hospital until someone there reviews it (and masks what needs masking).
"""

from piccolo.columns import JSON, BigInt, Boolean, Float, ForeignKey, Integer, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.patients.tables import Patient


class Study(Table, tablename="dicom_study"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    #: The enrolling hospital (organisation id) at upload.
    hcp = Integer()
    uploaded_by = Integer(null=True, default=None)
    study_uid = Varchar(length=64, index=True)
    description = Varchar(length=200, default="")
    #: Shifted study date as YYYYMMDD (de-identified), "" when none.
    study_date = Varchar(length=8, default="")
    modalities = Varchar(length=100, default="")
    #: The aggregated de-identification report (``deid.StudyReport`` as JSON).
    report = JSON(default="{}")
    created_at = Timestamptz(default=TimestamptzNow())


class Series(Table, tablename="dicom_series"):
    study = ForeignKey(Study, on_delete=OnDelete.cascade, index=True)
    series_uid = Varchar(length=64, index=True)
    modality = Varchar(length=16, default="")
    description = Varchar(length=200, default="")
    number = Integer(null=True, default=None)


class Instance(Table, tablename="dicom_instance"):
    series = ForeignKey(Series, on_delete=OnDelete.cascade, index=True)
    sop_uid = Varchar(length=64, index=True)
    sop_class = Varchar(length=64, default="")
    number = Integer(null=True, default=None)
    frames = Integer(default=1)
    rows = Integer(default=0)
    columns = Integer(default=0)
    #: Row/column spacing in mm (PixelSpacing), for lengths; None when the file has none.
    spacing_row = Float(null=True, default=None)
    spacing_col = Float(null=True, default=None)
    #: Key of the encrypted de-identified file in the core store.
    file_key = Varchar(length=80)
    size = BigInt(default=0)
    transfer_syntax = Varchar(length=64, default="")
    #: Burned-in text gate: True until someone of the uploader's hospital reviewed it.
    needs_review = Boolean(default=False)
    reviewed_by = Integer(null=True, default=None)
    reviewed_at = Timestamptz(null=True, default=None)
    #: Rectangles masked (Clean Pixel Data), [[x, y, w, h], ...].
    masked = JSON(default="[]")
    created_at = Timestamptz(default=TimestamptzNow())


class Upload(Table, tablename="dicom_upload"):
    """One upload batch: its per-file outcome (ok, not DICOM, corrupt, duplicate ...), for the uploader."""

    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    uploaded_by = Integer(null=True, default=None)
    results = JSON(default="[]")
    created_at = Timestamptz(default=TimestamptzNow())


class Annotation(Table, tablename="dicom_annotation"):
    instance = ForeignKey(Instance, on_delete=OnDelete.cascade, index=True)
    frame = Integer(default=0)
    author = Integer(null=True, default=None)
    #: ``arrow``, ``text``, ``length``, ``angle``, ``ellipse``.
    kind = Varchar(length=20)
    #: {"points": [[x, y], …]} in image pixels of the frame.
    geometry = JSON(default="{}")
    text = Varchar(length=500, default="")
    #: Computed on the server: {"mm": …} / {"degrees": …} / {"mean": …, "sd": …, "unit": "HU"}.
    measurement = JSON(default="{}")
    created_at = Timestamptz(default=TimestamptzNow())
