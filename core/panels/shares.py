"""Which parts of the patient record a panel sees: chosen by the enrolling hospital, never the identity.

Documents are shared under a label written for the panel (the stored title may carry a name),
and only after the sharer confirms the file itself identifies nobody.
"""

from __future__ import annotations

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Stream

from core.panels.access import audit, load_panel

#: share kind -> (patients table name, what members see)
ENTRY_KINDS = {
    "diagnosis": "Diagnosis",
    "phenotype": "Phenotype",
    "genetic": "GeneticFinding",
    "medication": "Medication",
}
LABELS = {
    "summary": "Clinical summary", "diagnosis": "Diagnoses", "phenotype": "Phenotype features",
    "genetic": "Genetic findings", "medication": "Medications", "document": "Documents",
}


def _table(kind: str):
    from core.patients import tables

    return getattr(tables, ENTRY_KINDS[kind])


async def shareable(settings, patient: dict) -> dict[str, list[dict]]:
    """What the enrolling hospital may choose from (titles decrypted: only it sees this)."""
    from core.patients.documents import documents_for

    out: dict[str, list[dict]] = {"summary": [{"id": None, "text": "Clinical summary"}]}
    for kind in ENTRY_KINDS:
        table = _table(kind)
        out[kind] = [{"id": r["id"], "text": describe(kind, r)} for r in await table.select().where(table.patient == patient["id"]).order_by(table.id)]
    out["document"] = [
        {"id": d["id"], "text": f"{d['kind_label']}: {d['title']}", "kind_label": d["kind_label"], "date": d["uploaded_at"].date().isoformat()}
        for d in await documents_for(settings, patient)
    ]
    return out


def describe(kind: str, row: dict) -> str:
    if kind in ("diagnosis", "phenotype"):
        code = f" ({row['system']}:{row['code']})" if row.get("code") else ""
        extra = row.get("status", "") if kind == "diagnosis" else ("present" if row.get("observed") else "absent")
        return f"{row['label']}{code}, {extra}".strip(", ")
    if kind == "genetic":
        return " ".join(x for x in (row["gene"], row["variant"], row["zygosity"], row["classification"]) if x)
    if kind == "medication":
        return " ".join(x for x in (row["name"], row["dose"]) if x)
    return ""


def parse_choices(form, available: dict[str, list[dict]]) -> tuple[list[dict], dict[str, str]]:
    """Checked items (``share`` values "kind:id") with document labels and confirmation."""
    valid = {f"{k}:{i['id'] if i['id'] is not None else ''}" for k, items in available.items() for i in items}
    errors: dict[str, str] = {}
    chosen = []
    for value in form.getall("share", []) if hasattr(form, "getall") else []:
        value = str(value)
        if value not in valid:
            errors["share"] = "One of the chosen items is no longer on the record; reload the page."
            continue
        kind, _, ref = value.partition(":")
        item = {"kind": kind, "ref_id": int(ref) if ref else None, "label": ""}
        if kind == "document":
            label = str(form.get(f"label_{ref}", "") or "").strip()
            if not 1 <= len(label) <= 200:
                errors[f"label_{ref}"] = "Give the shared document a label without the patient's name (at most 200 characters)."
            if str(form.get(f"deidentified_{ref}", "")) != "yes":
                errors[f"deidentified_{ref}"] = "Confirm that the file shows no name, record number or other identifier."
            item["label"] = label
        chosen.append(item)
    return chosen, errors


async def add_shares(panel_id: int, items: list[dict], actor_id: int) -> int:
    """Share ``items`` (from ``parse_choices``) with the panel; items already shared are skipped."""
    from core.panels.tables import PanelShare

    existing = {(r["kind"], r["ref_id"]) for r in await PanelShare.select(PanelShare.kind, PanelShare.ref_id).where(PanelShare.panel == panel_id)}
    rows = [
        PanelShare(panel=panel_id, kind=i["kind"], ref_id=i["ref_id"], label=i["label"], shared_by=actor_id)
        for i in items if (i["kind"], i["ref_id"]) not in existing
    ]
    if rows:
        await PanelShare.insert(*rows)
    return len(rows)


async def shared_data(panel_id: int, patient: dict) -> dict:
    """What panel members see: the chosen items as they are on the record now."""
    from core.patients.tables import Document, Patient
    from core.panels.tables import PanelShare

    shares = await PanelShare.select().where(PanelShare.panel == panel_id).order_by(PanelShare.id)
    out: dict = {"summary": "", "documents": [], "sections": {}}
    for kind in ENTRY_KINDS:
        ids = [s["ref_id"] for s in shares if s["kind"] == kind]
        if ids:
            table = _table(kind)
            rows = await table.select().where(table.id.is_in(ids) & (table.patient == patient["id"])).order_by(table.id)
            out["sections"][kind] = [{**r, "text": describe(kind, r)} for r in rows]
    if any(s["kind"] == "summary" for s in shares):
        row = await Patient.select(Patient.summary).where(Patient.id == patient["id"]).first()
        out["summary"] = row["summary"] if row else ""
    docs = [s for s in shares if s["kind"] == "document"]
    if docs:
        alive = {
            r["id"]: r for r in await Document.select(Document.id, Document.content_type, Document.size, Document.kind).where(
                Document.id.is_in([s["ref_id"] for s in docs]) & (Document.patient == patient["id"]) & Document.deleted_at.is_null()
            )
        }
        out["documents"] = [{**s, **{k: alive[s["ref_id"]][k] for k in ("content_type", "size")}} for s in docs if s["ref_id"] in alive]
    return out


@get("/panels/{panel_id:int}/shared/{share_id:int}", opt={"permission": "panels.view"}, include_in_schema=False)
async def shared_document(request: Request, panel_id: FromPath[int], share_id: FromPath[int]) -> Stream:
    from core.panels.tables import PanelShare
    from core.patients.documents import file_response
    from core.patients.tables import Document

    ctx = await load_panel(request, panel_id)
    share = await PanelShare.select().where((PanelShare.id == share_id) & (PanelShare.panel == panel_id) & (PanelShare.kind == "document")).first()
    row = None
    if share is not None:
        row = await Document.select().where(
            (Document.id == share["ref_id"]) & (Document.patient == ctx.patient["id"]) & Document.deleted_at.is_null()
        ).first()
    if row is None:
        raise NotFoundException("No such shared document.")
    response = await file_response(request.app.state.settings, row, f"panel-{panel_id}-{share_id}")
    await audit(request, ctx, "panel.document_download", {"share": share_id})
    return response


ROUTES = [shared_document]
