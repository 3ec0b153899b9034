"""Documents (PDF, images, lab reports, signed consent forms) on the patient record.

Files go through ``core.storage`` (type sniffed from the content, size limit checked while
streaming, encrypted at rest, atomic). The database row is written only after the file is
complete, and the file is removed again if the row cannot be written, so an interrupted
upload leaves neither a half file nor a dangling row. Titles and file names are encrypted:
they often carry the patient's name.
"""

from __future__ import annotations

from litestar import Request, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Stream, Template

from core.crypto import keyring
from core.events import Event
from core.identity.login import client_address
from core.patients.access import load_patient
from core.storage import Storage, StorageError, UploadRejected

KINDS = {
    "lab_report": "Laboratory report",
    "imaging_report": "Imaging report",
    "letter": "Clinical letter",
    "consent_form": "Signed consent form",
    "other": "Other",
}
ALLOWED_TYPES = {"application/pdf", "image/png", "image/jpeg", "image/tiff"}
MAX_BYTES = 50 * 1024 * 1024
READ_CHUNK = 256 * 1024


def _context(pseudonym: str) -> str:
    return f"patient:{pseudonym}:document"


async def _chunks(upload: UploadFile):
    while True:
        chunk = await upload.read(READ_CHUNK)
        if not chunk:
            return
        yield chunk


async def store_upload(request: Request, patient: dict, upload: UploadFile, kind: str, title: str) -> int:
    """Store the file, then its row; raises ``UploadRejected`` for bad files."""
    from core.patients.tables import Document

    settings = request.app.state.settings
    storage = Storage(settings)
    stored = await storage.save_stream(_chunks(upload), max_bytes=MAX_BYTES, allowed_types=ALLOWED_TYPES)
    ring = keyring(settings)
    filename = (upload.filename or "document").replace("/", "_").replace("\\", "_")[-200:]
    try:
        doc = Document(
            patient=patient["id"], kind=kind, title=ring.encrypt(title, _context(patient["pseudonym"])),
            filename=ring.encrypt(filename, _context(patient["pseudonym"])), content_type=stored.content_type,
            size=stored.size, sha256=stored.sha256, storage_key=stored.key, uploaded_by=request.scope["user"].user_id,
        )
        async with Document._meta.db.transaction():
            await doc.save()
            from core.patients.records import audit

            await audit(request, "document.upload", patient, {"document": doc.id, "kind": kind, "size": stored.size})
    except BaseException:
        # No row, no file: unless another document holds the same content.
        if not await Document.exists().where(Document.storage_key == stored.key):
            await storage.delete(stored.key)
        raise
    await request.app.state.host.events.emit(
        Event("document.uploaded", request.scope["user"].user_id, "patient", patient["pseudonym"], {"document": doc.id, "kind": kind}, client_address(request))
    )
    return doc.id


async def documents_for(settings, patient: dict) -> list[dict]:
    from core.patients.tables import Document

    ring = keyring(settings)
    rows = await Document.select().where((Document.patient == patient["id"]) & Document.deleted_at.is_null()).order_by(Document.id, ascending=False)
    return [
        {**r, "title": ring.decrypt(r["title"], _context(patient["pseudonym"])), "filename": ring.decrypt(r["filename"], _context(patient["pseudonym"])),
         "kind_label": KINDS.get(r["kind"], r["kind"])}
        for r in rows
    ]


@post(
    "/patients/{pseudonym:str}/documents", opt={"permission": "patients.edit"}, include_in_schema=False,
    request_max_body_size=MAX_BYTES + 1024 * 1024,
)
async def upload(request: Request, pseudonym: FromPath[str]) -> Template | Redirect:
    from core.patients.clinical import _rerender

    patient = await load_patient(request, pseudonym, "patients.edit")
    form = await request.form()
    kind = str(form.get("kind", ""))
    title = str(form.get("title", "")).strip()
    file = form.get("file")
    errors = {}
    if kind not in KINDS:
        errors["kind"] = "Choose what kind of document this is."
    if not 1 <= len(title) <= 200:
        errors["title"] = "Give the document a title (at most 200 characters)."
    if not isinstance(file, UploadFile):
        errors["file"] = "Choose a file."
    if errors:
        return await _rerender(request, patient, errors, "documents")
    try:
        await store_upload(request, patient, file, kind, title)
    except UploadRejected as exc:
        response = await _rerender(request, patient, {"file": exc.message}, "documents")
        response.status_code = exc.status
        return response
    return Redirect(f"/patients/{pseudonym}#documents", status_code=303)


EXTENSIONS = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg", "image/tiff": "tif"}


async def file_response(settings, row: dict, name_stem: str) -> Stream:
    """A stored document as a download, named ``<name_stem>.<ext>`` (a pseudonym or a panel
    number, never the original file name: downloads end up in shared folders). The caller has
    checked access; it audits once the file is known to be readable."""
    try:
        body = await Storage(settings).open_stream(row["storage_key"])
    except (StorageError, FileNotFoundError) as exc:
        raise NotFoundException("The file cannot be read; the helpdesk was told.") from exc
    ext = EXTENSIONS.get(row["content_type"], "bin")
    return Stream(
        body, media_type=row["content_type"],
        headers={"Content-Disposition": f'attachment; filename="{name_stem}.{ext}"', "Content-Length": str(row["size"])},
    )


@get("/patients/{pseudonym:str}/documents/{document_id:int}", opt={"permission": "patients.view"}, include_in_schema=False)
async def download(request: Request, pseudonym: FromPath[str], document_id: FromPath[int]) -> Stream:
    from core.patients.records import audit
    from core.patients.tables import Document

    patient = await load_patient(request, pseudonym)
    row = await Document.select().where(
        (Document.id == document_id) & (Document.patient == patient["id"]) & Document.deleted_at.is_null()
    ).first()
    if row is None:
        raise NotFoundException("No such document.")
    response = await file_response(request.app.state.settings, row, f"{pseudonym}-{document_id}")
    await audit(request, "document.download", patient, {"document": document_id})
    return response


ROUTES = [upload, download]
