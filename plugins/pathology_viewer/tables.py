"""Whole-slide images of a patient, their shared annotations and embed share links.

A slide file is kept through the core's encrypted store (``file_key``); the row holds only what
OpenSlide reported after the identifying properties were filtered out. The upload's file name is
never kept (it often carries the patient's name), only its format. ``title`` is written for the
panel and must not identify the patient (the upload form says so).
Annotation geometry is in level-0 image pixels, so it is independent of the zoom it was drawn at.
"""

from piccolo.columns import JSON, BigInt, Boolean, Float, ForeignKey, Integer, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.patients.tables import Patient


class Slide(Table, tablename="pathology_slide"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    #: The enrolling hospital (organisation id) at upload: it alone sees label and macro images.
    hcp = Integer()
    uploaded_by = Integer(null=True, default=None)
    title = Varchar(length=200, default="")
    #: Key of the encrypted file in the core store (``core.storage``); a MIRAX slide is kept as its ZIP.
    file_key = Varchar(length=80)
    sha256 = Varchar(length=64, index=True)
    size = BigInt(default=0)
    #: ``svs``, ``ndpi``, ``mrxs`` (zip), ``tiff``, ``dcm`` (zip or file)…: what the file was stored as.
    container = Varchar(length=20, default="")
    vendor = Varchar(length=40, default="")
    width = BigInt(default=0)
    height = BigInt(default=0)
    level_count = Integer(default=1)
    mpp_x = Float(null=True, default=None)
    mpp_y = Float(null=True, default=None)
    objective_power = Float(null=True, default=None)
    #: OpenSlide properties after the privacy filter (``slides.safe_properties``).
    properties = JSON(default="{}")
    #: Which associated images the file has (never served outside the enrolling hospital).
    associated = JSON(default="[]")
    #: The enrolling hospital may keep a slide out of the panels about this patient.
    hidden_from_panels = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())


class Annotation(Table, tablename="pathology_annotation"):
    slide = ForeignKey(Slide, on_delete=OnDelete.cascade, index=True)
    author = Integer(null=True, default=None)
    #: ``point``, ``rect``, ``polygon``, ``freehand``, ``text``.
    kind = Varchar(length=20)
    #: {"points": [[x, y], …]} in level-0 pixels (a rect: two corners; a point/text: one).
    geometry = JSON(default="{}")
    text = Varchar(length=500, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class ShareLink(Table, tablename="pathology_share_link"):
    """A signed, expiring, revocable link showing one slide (no label, macro or annotations by
    others than chosen) inside another web page. The token carries ``id`` and ``nonce`` signed
    with a key derived from the site keyring; revoking sets ``revoked_at``."""

    slide = ForeignKey(Slide, on_delete=OnDelete.cascade, index=True)
    nonce = Varchar(length=32, unique=True)
    created_by = Integer(null=True, default=None)
    #: Where the link is meant to be used (a note for the list of links), e.g. "tumour board slides".
    note = Varchar(length=200, default="")
    with_annotations = Boolean(default=False)
    expires_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
