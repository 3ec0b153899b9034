"""A printable consent form per ERN (PDF): the four consent kinds with what each allows and what
refusing or withdrawing changes (``consent_rules.EXPLAINED``, the same source the system enforces),
boxes to tick, and lines for the patient's (or guardian's) and the clinician's signatures.

The form is blank: it carries no patient data, so any clinician may print it before enrolment. Its
version string is what the enrolment form asks for ("Form version").
"""

from __future__ import annotations

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Response

#: Bumped when the wording changes; printed on the form and suggested when consent is recorded.
FORM_VERSION = "1 (2026-12)"


def version_for(acronym: str) -> str:
    return f"CPMS {acronym} consent v{FORM_VERSION}"


def render(ern: dict) -> bytes:
    from core.patients.access import CONSENT_KINDS
    from core.patients.consent_rules import EXPLAINED
    from core.patients.gdpr_export import _report_class, pdf_text

    version = version_for(ern["acronym"])

    class Form(_report_class()):
        def footer_text(self) -> str:
            return version

    pdf = Form(format="A4")
    pdf.set_title(pdf_text(f"Consent - {ern['acronym']}"))
    pdf.set_author("CPMS")
    pdf.set_auto_page_break(True, margin=18)
    pdf.alias_nb_pages()
    pdf.add_page()

    def text(value: str, style: str = "", size: int = 10, height: float = 5) -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(0, height, pdf_text(value), new_x="LMARGIN", new_y="NEXT")

    text(f"Consent to care and data sharing in the {ern['name']} ({ern['acronym']})", "B", 14, 7)
    pdf.ln(2)
    text(
        "Your hospital is a member of a European Reference Network (ERN) for rare diseases. With your consent, "
        "your doctors can ask the best experts in Europe about your condition in a virtual panel, without you "
        "having to travel. Please read each part and tick one box for each. You may change your mind at any "
        "time by telling your hospital: a withdrawal takes effect at once."
    )
    for kind, label in CONSENT_KINDS.items():
        allows, otherwise = EXPLAINED[kind]
        if pdf.will_page_break(45):
            pdf.add_page()
        pdf.ln(3)
        text(label, "B", 11, 6)
        text(allows)
        text("If you do not agree, or withdraw later: " + otherwise, "I", 9, 4.5)
        pdf.ln(1)
        pdf.set_font("Helvetica", size=10)
        for choice in ("I agree", "I do not agree"):
            x, y = pdf.get_x(), pdf.get_y()
            pdf.rect(x, y + 1, 3.5, 3.5)
            pdf.set_x(x + 5)
            pdf.cell(45, 5.5, choice)
        pdf.ln(7)
    if pdf.will_page_break(70):
        pdf.add_page()
    pdf.ln(4)
    for caption in (
        "Patient's name", "Date of birth", "Hospital record number",
        "Signature of the patient (or parent / legal guardian: name and relation)", "Date",
        "Clinician (name and signature)", "Date",
    ):
        pdf.set_font("Helvetica", size=9)
        pdf.cell(0, 5, pdf_text(caption), new_x="LMARGIN", new_y="NEXT")
        pdf.cell(0, 7, "_" * 95, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    text(f"Form version (record it with the consent in CPMS): {version}", "", 8, 4)
    return bytes(pdf.output())


@get("/patients/consent-form/{ern_id:int}", opt={"permission": "patients.view"}, include_in_schema=False)
async def consent_form(request: Request, ern_id: FromPath[int]) -> Response:
    from core.orgs.tables import Ern

    ern = await Ern.select(Ern.id, Ern.acronym, Ern.name).where(Ern.id == ern_id).first()
    if ern is None:
        raise NotFoundException("No such network.")
    name = "consent-form-" + "".join(ch if ch.isalnum() else "-" for ch in ern["acronym"]).strip("-") + ".pdf"
    return Response(
        render(ern), media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


ROUTES = [consent_form]
