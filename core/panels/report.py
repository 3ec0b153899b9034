"""The panel outcome report: a PDF built once the outcome is signed, kept on the patient record.

The report names the patient by nickname and pseudonym only, never the identity: it is
written for (and read by) people outside the enrolling hospital. Built with fpdf2 and the
PDF core fonts, as the GDPR export is (``core.patients.gdpr_export``), whose page class,
writer and transliteration it reuses.
"""

from __future__ import annotations

from datetime import datetime, timezone

from core.patients.gdpr_export import PDF_ENCODING, _needs_transliteration, _report_class, _Writer

TITLE = "Panel outcome report"
KIND = "letter"  # "Clinical letter": the closest document kind of core.patients.documents
ROLE_LABELS = {"lead": "Lead", "member": "Member", "guest": "Guest", "creator": "Requesting clinician"}


def _utc_text(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def document_title(panel_id: int) -> str:
    return f"Panel #{panel_id} outcome report"


def file_name(panel_id: int) -> str:
    return f"panel-{panel_id}-outcome.pdf"


async def report_data(panel_id: int, *, signed: dict[int, datetime] | None = None, generated_at: datetime | None = None) -> dict:
    """Everything the report shows, as text. ``signed`` adds signatures (user id -> when) that
    are being recorded in the same step as the report is built."""
    from core.identity.tables import User
    from core.orgs.tables import Ern
    from core.panels.access import KINDS
    from core.panels.tables import Outcome, OutcomeSigner, Panel, PanelMember
    from core.patients.tables import Patient

    signed = dict(signed or {})
    panel = await Panel.select().where(Panel.id == panel_id).first()
    if panel is None:
        raise LookupError(f"no panel {panel_id}")
    patient = await Patient.select(Patient.nickname, Patient.pseudonym).where(Patient.id == panel["patient"]).first()
    ern = await Ern.select(Ern.acronym, Ern.name).where(Ern.id == panel["ern"]).first()
    outcome = await Outcome.select().where(Outcome.panel == panel_id).first() or {}
    cosigners = await OutcomeSigner.select().where(OutcomeSigner.panel == panel_id).order_by(OutcomeSigner.id)
    members = await PanelMember.select(PanelMember.user, PanelMember.role).where(
        (PanelMember.panel == panel_id) & (PanelMember.status == "accepted")
    ).order_by(PanelMember.id)

    ids = {panel["lead"], panel["created_by"]} | {m["user"] for m in members} | {s["user"] for s in cosigners}
    people = {
        u["id"]: u for u in await User.select(User.id, User.name, User.hcp.name.as_alias("hospital")).where(User.id.is_in(sorted(ids)))
    }

    def name(uid: int) -> str:
        return people.get(uid, {}).get("name") or f"user {uid}"

    def hospital(uid: int) -> str:
        return people.get(uid, {}).get("hospital") or ""

    roster = [(panel["lead"], "lead")]
    roster += [(m["user"], m["role"] if m["role"] in ROLE_LABELS else "member") for m in members if m["user"] != panel["lead"]]
    if panel["created_by"] not in {uid for uid, _ in roster}:
        roster.append((panel["created_by"], "creator"))

    lead_signed = signed.get(panel["lead"]) or outcome.get("signed_at")
    signatures = [{"name": name(panel["lead"]), "role": "Lead", "signed_at": _utc_text(lead_signed) if lead_signed else "not signed"}]
    for s in cosigners:
        when = signed.get(s["user"]) or s["signed_at"]
        signatures.append({"name": name(s["user"]), "role": "Co-signer", "signed_at": _utc_text(when) if when else "not signed"})

    return {
        "panel_id": panel_id,
        "title": panel["title"],
        "question": panel["question"],
        "kind": KINDS.get(panel["kind"], panel["kind"]),
        "ern": f"{ern['acronym']} - {ern['name']}" if ern else "",
        "ern_acronym": ern["acronym"] if ern else "",
        "nickname": patient["nickname"],
        "pseudonym": patient["pseudonym"],
        "submitted_at": _utc_text(panel["submitted_at"] or panel["created_at"]),
        "findings": outcome.get("findings", ""),
        "diagnosis_label": outcome.get("diagnosis_label", ""),
        "diagnosis_system": outcome.get("diagnosis_system", ""),
        "diagnosis_code": outcome.get("diagnosis_code", ""),
        "diagnosis_codings": outcome.get("diagnosis_codings", "[]"),
        "recommendations": outcome.get("recommendations", ""),
        "treatment_plan": outcome.get("treatment_plan", ""),
        "members": [{"name": name(uid), "role": ROLE_LABELS[role], "hospital": hospital(uid)} for uid, role in roster],
        "signatures": signatures,
        "generated_at": _utc_text(generated_at or datetime.now(timezone.utc)),
    }


def diagnosis_text(data: dict) -> str:
    label = data.get("diagnosis_label") or ""
    code = data.get("diagnosis_code") or ""
    system = data.get("diagnosis_system") or ""
    if code:
        from core.patients.coded import load

        codes = [f"{system}:{code}" if system else code] + [f"{c['system']}:{c['code']}" for c in load(data.get("diagnosis_codings"))]
        coded = ", ".join(codes)
        return f"{label} ({coded})" if label else coded
    return label


def _page_class():
    base = _report_class()

    class OutcomeReport(base):
        panel_id = 0

        def footer_text(self) -> str:
            return f"CPMS panel #{self.panel_id} outcome - {self.pseudonym}"

    return OutcomeReport


def outcome_pdf(data: dict, *, compress: bool = True) -> bytes:
    """The report as PDF bytes (``compress=False`` leaves the text readable in the bytes)."""
    pdf = _page_class()(format="A4")
    pdf.pseudonym = data["pseudonym"]
    pdf.panel_id = data["panel_id"]
    pdf.compress = compress
    pdf.core_fonts_encoding = PDF_ENCODING
    pdf.set_auto_page_break(auto=True, margin=15)
    # Metadata travels with the file (indexes, mail filters): panel number and pseudonym only.
    pdf.set_title(f"CPMS panel #{data['panel_id']} outcome ({data['pseudonym']})")
    pdf.set_creator("CPMS")
    pdf.add_page()
    w = _Writer(pdf)
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 8, TITLE, new_x="LMARGIN", new_y="NEXT")
    w.paragraph(f"Panel #{data['panel_id']}: {data['title']}", style="B", size=11)
    w.facts([
        ("Panel", f"#{data['panel_id']}"),
        ("European Reference Network", data["ern"]),
        ("Patient (nickname)", data["nickname"]),
        ("Pseudonym", data["pseudonym"]),
        ("Type of panel", data["kind"]),
        ("Submitted", data["submitted_at"]),
        ("Report generated", data["generated_at"]),
    ])
    if _needs_transliteration(data):
        w.paragraph("Some letters could not be shown in this PDF and are written in Latin letters; the panel page keeps the exact spelling.", style="I")
    for heading, text in (
        ("Clinical question", data["question"]),
        ("Findings", data["findings"]),
        ("Diagnosis", diagnosis_text(data)),
        ("Recommendations", data["recommendations"]),
        ("Treatment plan", data["treatment_plan"]),
    ):
        w.heading(heading)
        w.paragraph(text or "None given.", style="" if text else "I")
    w.heading("Panel members")
    w.table(("Name", "Role", "Hospital"), [(m["name"], m["role"], m["hospital"]) for m in data["members"]], widths=(4, 2, 5))
    w.heading("Signatures")
    w.table(("Name", "Role", "Signed"), [(s["name"], s["role"], s["signed_at"]) for s in data["signatures"]], widths=(4, 2, 4))
    w.paragraph(
        "This report was produced by CPMS from the outcome the panel signed. It refers to the patient by nickname and "
        "pseudonym only; the enrolling hospital links it to the patient's record.",
        style="I", size=8,
    )
    return bytes(pdf.output())


async def store_pdf(settings, pdf: bytes):
    """Write the report to the encrypted file store; returns the ``StoredFile``."""
    from core.patients.documents import MAX_BYTES
    from core.storage import Storage

    async def one():
        yield pdf

    return await Storage(settings).save_stream(one(), max_bytes=MAX_BYTES, allowed_types={"application/pdf"})
