"""A panel's outcome: the lead drafts, members comment, co-signers sign after the lead, and the
final outcome becomes a PDF report on the patient's record that names the patient by nickname
and pseudonym only."""

from __future__ import annotations

import re
import zlib

from core.panels.outcome import contributors, is_final
from tests.conftest import login, make_user, post_form
from tests.panels_support import IDENTITY, hcp_of, make_patient, make_panel, revision

DRAFT = {
    "findings": "Cerebellar atrophy on MRI; normal nerve conduction; FXN repeat expansion absent.",
    "f_diagnosis_label": "ORPHA:98756 Spinocerebellar ataxia type 2",
    "f_diagnosis_system": "", "f_diagnosis_code": "",
    "recommendations": "Test ATXN2 CAG repeat length; genetic counselling for the family.",
    "treatment_plan": "Physiotherapy twice weekly; review in 6 months.",
}


async def as_user(client, email: str) -> None:
    client.cookies.clear()
    r = await login(client, email)
    assert r.status_code in (302, 303), r.text


async def cast():
    creator = await make_user("creator@example.org", name="Dr Creator")
    lead = await make_user("lead@example.org", hcp="Lead Hospital", name="Dr Lead")
    ana = await make_user("ana@example.org", hcp="Ana Hospital", name="Dr Ana")
    ben = await make_user("ben@example.org", hcp="Ben Hospital", name="Dr Ben")
    invitee = await make_user("invitee@example.org", hcp="Ben Hospital", name="Dr Invitee")
    patient = await make_patient(await hcp_of(creator))
    return {"creator": creator, "lead": lead, "ana": ana, "ben": ben, "invitee": invitee, "patient": patient}


async def new_panel(people, status="open"):
    return await make_panel(
        people["patient"], people["creator"], lead=people["lead"], status=status,
        members=[people["ana"], people["ben"]], invited=[people["invitee"]],
    )


async def form(client, url: str, pid: int, data: dict | None = None):
    return await post_form(client, url, {**(data or {}), "revision": await revision(pid)})


async def outcome_of(pid: int) -> dict | None:
    from core.panels.tables import Outcome

    return await Outcome.select().where(Outcome.panel == pid).first()


async def set_status(pid: int, status: str) -> None:
    from core.panels.tables import Panel

    await Panel.update({Panel.status: status}).where(Panel.id == pid)


def pdf_text(pdf: bytes) -> str:
    """Everything readable in a PDF: its raw bytes plus every Flate stream decompressed."""
    parts = [pdf.decode("latin-1")]
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            parts.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            pass
    return "\n".join(parts)


async def test_lead_drafts_members_comment_others_may_not(client):
    from core.panels.tables import OutcomeComment, PanelTransition

    people = await cast()
    pid = await new_panel(people)
    await as_user(client, "lead@example.org")
    r = await form(client, f"/panels/{pid}/outcome", pid, DRAFT)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/panels/{pid}#outcome"
    row = await outcome_of(pid)
    assert row["findings"] == DRAFT["findings"] and row["treatment_plan"] == DRAFT["treatment_plan"]
    # A suggestion picked from the code search ("SYSTEM:code label") is split into its parts.
    assert (row["diagnosis_label"], row["diagnosis_system"], row["diagnosis_code"]) == ("Spinocerebellar ataxia type 2", "ORPHA", "98756")
    assert row["updated_by"] == people["lead"] and row["signed_by"] is None
    assert [t["action"] for t in await PanelTransition.select().where(PanelTransition.panel == pid)] == ["outcome_drafted"]

    # Saved again: the same row changes.
    r = await form(client, f"/panels/{pid}/outcome", pid, {**DRAFT, "f_diagnosis_label": "Ataxia", "f_diagnosis_system": "ICD-10", "f_diagnosis_code": "G11.1"})
    assert r.status_code == 303
    row = await outcome_of(pid)
    assert (row["diagnosis_label"], row["diagnosis_system"], row["diagnosis_code"]) == ("Ataxia", "ICD-10", "G11.1")

    # A member comments, but may not draft.
    await as_user(client, "ana@example.org")
    r = await form(client, f"/panels/{pid}/outcome/comments", pid, {"body": "Agree; consider SCA3 as well."})
    assert r.status_code == 303, r.text
    r = await form(client, f"/panels/{pid}/outcome", pid, {**DRAFT, "findings": "Ana's version"})
    assert r.status_code == 403
    assert (await outcome_of(pid))["findings"] == DRAFT["findings"]
    # The creator (enrolling HP) comments too.
    await as_user(client, "creator@example.org")
    assert (await form(client, f"/panels/{pid}/outcome/comments", pid, {"body": "Family history sent."})).status_code == 303
    assert (await form(client, f"/panels/{pid}/outcome", pid, DRAFT)).status_code == 403

    # Not a member: 404; invited but not accepted: 403.
    await make_user("outsider@example.org", hcp="Far Hospital")
    await as_user(client, "outsider@example.org")
    assert (await form(client, f"/panels/{pid}/outcome/comments", pid, {"body": "Me too"})).status_code == 404
    assert (await form(client, f"/panels/{pid}/outcome", pid, DRAFT)).status_code == 404
    await as_user(client, "invitee@example.org")
    assert (await form(client, f"/panels/{pid}/outcome/comments", pid, {"body": "Me too"})).status_code == 403

    comments = await OutcomeComment.select().where(OutcomeComment.panel == pid).order_by(OutcomeComment.id)
    assert [(c["author"], c["body"]) for c in comments] == [
        (people["ana"], "Agree; consider SCA3 as well."), (people["creator"], "Family history sent."),
    ]

    # The page shows the outcome and the comments with their authors.
    await as_user(client, "ben@example.org")
    page = await client.get(f"/panels/{pid}")
    assert page.status_code == 200
    section = page.text.split('id="outcome"')[1].split("</section>")[0]
    assert "Dr Ana" in section and "Agree; consider SCA3 as well." in section and "G11.1" in section
    assert f'action="/panels/{pid}/outcome"' not in section  # Ben may not draft
    assert f'action="/panels/{pid}/outcome/comments"' in section


async def test_researcher_is_refused(client):
    people = await cast()
    pid = await new_panel(people)
    await make_user("researcher@example.org", roles=(("researcher", "ERN RND"),), hcp=None)
    await as_user(client, "researcher@example.org")
    assert (await form(client, f"/panels/{pid}/outcome", pid, DRAFT)).status_code == 403
    assert (await client.get(f"/panels/{pid}/outcome.pdf")).status_code == 403
    assert await outcome_of(pid) is None


async def test_invalid_drafts_and_comments_store_nothing(client):
    from core.panels.tables import OutcomeComment

    people = await cast()
    pid = await new_panel(people)
    await as_user(client, "lead@example.org")
    before = await revision(pid)
    for bad in (
        {"findings": "x" * 20001},
        {"treatment_plan": "x" * 20001},
        {"f_diagnosis_label": "Ataxia", "f_diagnosis_system": "", "f_diagnosis_code": "G11.1"},   # code without system
        {"f_diagnosis_label": "", "f_diagnosis_system": "ICD-10", "f_diagnosis_code": "G11.1"},   # code without label
    ):
        r = await form(client, f"/panels/{pid}/outcome", pid, {**DRAFT, **bad})
        assert r.status_code == 422, (bad, r.status_code)
    r = await post_form(client, f"/panels/{pid}/outcome", {**DRAFT, "revision": str(int(before) - 1)})
    assert r.status_code == 409
    assert await outcome_of(pid) is None
    assert await revision(pid) == before
    # Nothing to comment on yet.
    await as_user(client, "ana@example.org")
    assert (await form(client, f"/panels/{pid}/outcome/comments", pid, {"body": "Early thought"})).status_code == 409
    await as_user(client, "lead@example.org")
    assert (await form(client, f"/panels/{pid}/outcome", pid, DRAFT)).status_code == 303
    await as_user(client, "ana@example.org")
    assert (await form(client, f"/panels/{pid}/outcome/comments", pid, {"body": "   "})).status_code == 422
    assert (await form(client, f"/panels/{pid}/outcome/comments", pid, {"body": "x" * 5001})).status_code == 422
    assert (await post_form(client, f"/panels/{pid}/outcome/comments", {"body": "stale", "revision": "0"})).status_code == 409
    assert await OutcomeComment.count() == 0
    # Closed panels change no more.
    await set_status(pid, "closed")
    assert (await form(client, f"/panels/{pid}/outcome/comments", pid, {"body": "Late"})).status_code == 409
    await as_user(client, "lead@example.org")
    assert (await form(client, f"/panels/{pid}/outcome", pid, {**DRAFT, "findings": "Changed"})).status_code == 409
    assert (await outcome_of(pid))["findings"] == DRAFT["findings"]
    assert await OutcomeComment.count() == 0


async def test_signing_needs_review_state_and_the_essentials(client):
    people = await cast()
    pid = await new_panel(people)
    await as_user(client, "lead@example.org")
    assert (await form(client, f"/panels/{pid}/outcome", pid, {**DRAFT, "recommendations": ""})).status_code == 303
    # Still open for discussion: not yet up for review.
    assert (await form(client, f"/panels/{pid}/outcome/sign", pid)).status_code == 409
    await set_status(pid, "outcome_review")
    r = await form(client, f"/panels/{pid}/outcome/sign", pid)
    assert r.status_code == 422 and "recommendations" in r.text
    row = await outcome_of(pid)
    assert row["signed_by"] is None and row["signed_at"] is None
    assert not await is_final(pid)
    # A member may not sign in the lead's place.
    assert (await form(client, f"/panels/{pid}/outcome", pid, DRAFT)).status_code == 303
    await as_user(client, "ana@example.org")
    assert (await form(client, f"/panels/{pid}/outcome/sign", pid)).status_code == 403
    assert (await outcome_of(pid))["signed_by"] is None


async def test_cosigner_flow_report_and_record(client, settings):
    from core.activity.tables import Activity
    from core.audit.tables import AuditEntry
    from core.crypto import keyring
    from core.notify.tables import Notification
    from core.panels.tables import Message, OutcomeSigner
    from core.patients.tables import Document

    people = await cast()
    pid = await new_panel(people, status="outcome_review")
    await Message.insert(Message(panel=pid, author=people["ben"], body="Exome is pending."))
    await as_user(client, "lead@example.org")
    assert (await form(client, f"/panels/{pid}/outcome", pid, DRAFT)).status_code == 303

    # Co-signers come from the accepted members only.
    r = await form(client, f"/panels/{pid}/outcome/signers", pid, {"signer": [str(people["ana"]), str(people["invitee"])]})
    assert r.status_code == 422
    assert await OutcomeSigner.count() == 0
    r = await form(client, f"/panels/{pid}/outcome/signers", pid, {"signer": [str(people["ana"])]})
    assert r.status_code == 303, r.text
    assert [s["user"] for s in await OutcomeSigner.select()] == [people["ana"]]

    # The co-signer cannot sign before the lead.
    await as_user(client, "ana@example.org")
    assert (await form(client, f"/panels/{pid}/outcome/sign", pid)).status_code == 409
    assert (await OutcomeSigner.select().first())["signed_at"] is None

    await as_user(client, "lead@example.org")
    r = await form(client, f"/panels/{pid}/outcome/sign", pid)
    assert r.status_code == 303, r.text
    row = await outcome_of(pid)
    assert row["signed_by"] == people["lead"] and row["signed_at"] is not None and row["document"] is None
    assert not await is_final(pid)
    assert (await client.get(f"/panels/{pid}/outcome.pdf")).status_code == 404  # not final yet
    # The co-signer is asked to sign.
    asked = await Notification.select().where((Notification.kind == "panel.outcome") & (Notification.user == people["ana"]))
    assert len(asked) == 1 and "signature" in asked[0]["title"]

    # Locked: no more edits, no new co-signers, no second signature.
    r = await form(client, f"/panels/{pid}/outcome", pid, {**DRAFT, "findings": "Rewritten after signing"})
    assert r.status_code == 409
    assert (await outcome_of(pid))["findings"] == DRAFT["findings"]
    assert (await form(client, f"/panels/{pid}/outcome/signers", pid, {"signer": [str(people["ben"])]})).status_code == 409
    assert [s["user"] for s in await OutcomeSigner.select()] == [people["ana"]]
    assert (await form(client, f"/panels/{pid}/outcome/sign", pid)).status_code == 409

    # Ben was not asked to co-sign.
    await as_user(client, "ben@example.org")
    assert (await form(client, f"/panels/{pid}/outcome/sign", pid)).status_code == 403
    assert await Document.count() == 0

    # The last signature makes it final: the report goes onto the patient's record.
    await as_user(client, "ana@example.org")
    r = await form(client, f"/panels/{pid}/outcome/sign", pid)
    assert r.status_code == 303, r.text
    assert await is_final(pid)
    row = await outcome_of(pid)
    [doc] = await Document.select().where(Document.patient == people["patient"]["id"])
    assert row["document"] == doc["id"]
    assert doc["kind"] == "letter" and doc["content_type"] == "application/pdf" and doc["uploaded_by"] == people["lead"]
    ring, context = keyring(settings), f"patient:{people['patient']['pseudonym']}:document"
    assert ring.decrypt(doc["title"], context) == f"Panel #{pid} outcome report"
    assert (await form(client, f"/panels/{pid}/outcome/sign", pid)).status_code == 409  # signed already
    assert await Document.count() == 1

    # Creator and lead are told (Ana acted, so not her); the event is recorded once.
    told = await Notification.select().where((Notification.kind == "panel.outcome") & Notification.title.like("%outcome is signed%"))
    assert {n["user"] for n in told} == {people["creator"], people["lead"]}
    assert all(n["link"] == f"/panels/{pid}#outcome" for n in told)
    assert await Activity.count().where(Activity.action == "panel.outcome_signed") == 1

    # Anyone with the full view downloads it; the download is audited.
    await as_user(client, "ben@example.org")
    r = await client.get(f"/panels/{pid}/outcome.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    pdf = r.content
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf)
    nickname, pseudonym = people["patient"]["nickname"], people["patient"]["pseudonym"]
    for expected in ("Panel outcome report", nickname, pseudonym, "ERN RND", "Cerebellar atrophy on MRI",
                     "ORPHA:98756", "Spinocerebellar ataxia type 2", "Test ATXN2 CAG repeat length", "Physiotherapy twice weekly",
                     "Which diagnosis explains the progressive ataxia", "Dr Lead", "Dr Ana", "Dr Ben", "Co-signer"):
        assert expected in text, expected
    for secret in (IDENTITY["given_name"], IDENTITY["family_name"], IDENTITY["local_record_number"], IDENTITY["date_of_birth"]):
        assert secret not in text, secret
    downloads = await AuditEntry.select().where(AuditEntry.action == "panel.outcome_downloaded")
    assert len(downloads) == 1 and downloads[0]["patient_pseudonym"] == pseudonym and downloads[0]["actor_id"] == people["ben"]

    # The enrolling hospital finds the report among the patient's documents.
    await as_user(client, "creator@example.org")
    record = await client.get(f"/patients/{pseudonym}")
    assert record.status_code == 200
    assert f"Panel #{pid} outcome report" in record.text
    assert f"/patients/{pseudonym}/documents/{doc['id']}" in record.text
    stored = await client.get(f"/patients/{pseudonym}/documents/{doc['id']}")
    assert stored.status_code == 200 and stored.content == pdf

    # Contributors: the lead (drafted, signed), Ana (signed), Ben (posted a message).
    assert await contributors(pid) == {people["lead"], people["ana"], people["ben"]}

    # The page offers the report and no more forms for the outcome.
    page = await client.get(f"/panels/{pid}")
    section = page.text.split('id="outcome"')[1].split("</section>")[0]
    assert f"/panels/{pid}/outcome.pdf" in section
    assert "/outcome/sign" not in section and f'action="/panels/{pid}/outcome"' not in section


async def test_lead_alone_signs_final_and_outsiders_get_nothing(client):
    from core.patients.tables import Document

    people = await cast()
    pid = await new_panel(people, status="outcome_review")
    await as_user(client, "lead@example.org")
    assert (await form(client, f"/panels/{pid}/outcome", pid, DRAFT)).status_code == 303
    assert (await form(client, f"/panels/{pid}/outcome/sign", pid)).status_code == 303
    assert await is_final(pid)
    assert await Document.count() == 1
    assert (await client.get(f"/panels/{pid}/outcome.pdf")).status_code == 200

    await as_user(client, "invitee@example.org")
    assert (await client.get(f"/panels/{pid}/outcome.pdf")).status_code == 403
    await make_user("outsider@example.org", hcp="Far Hospital")
    await as_user(client, "outsider@example.org")
    assert (await client.get(f"/panels/{pid}/outcome.pdf")).status_code == 404


async def test_report_is_built_without_identity_and_readable_uncompressed(clean_db):
    """report.py on its own: the data it collects and the uncompressed PDF it writes."""
    from core.panels.report import outcome_pdf, report_data
    from core.panels.tables import Outcome

    people = await cast()
    pid = await new_panel(people, status="outcome_review")
    await Outcome.insert(Outcome(panel=pid, findings="Ataxie cérébelleuse – Ωmega test", recommendations="Gene panel",
                                 diagnosis_label="Friedreich ataxia", diagnosis_system="ORPHA", diagnosis_code="95"))
    data = await report_data(pid)
    assert data["nickname"] == people["patient"]["nickname"] and data["pseudonym"] == people["patient"]["pseudonym"]
    assert [s["signed_at"] for s in data["signatures"]] == ["not signed"]
    assert {m["name"] for m in data["members"]} == {"Dr Lead", "Dr Ana", "Dr Ben", "Dr Creator"}
    flat = repr(data)
    for secret in (IDENTITY["given_name"], IDENTITY["family_name"], IDENTITY["local_record_number"]):
        assert secret not in flat
    raw = outcome_pdf(data, compress=False)
    assert raw.startswith(b"%PDF-")
    assert people["patient"]["nickname"].encode("cp1252") in raw
    assert rb"Friedreich ataxia \(ORPHA:95\)" in raw  # parentheses are escaped in PDF strings
    assert "Ataxie cérébelleuse".encode("cp1252") in raw  # kept where the core fonts can show it
    assert b"Omega test" in raw  # transliterated where they cannot
    assert IDENTITY["family_name"].encode() not in raw
    compressed = outcome_pdf(data)
    assert people["patient"]["nickname"].encode("cp1252") not in compressed  # compressed by default
    assert people["patient"]["nickname"] in pdf_text(compressed)
