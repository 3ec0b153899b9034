"""Demo panels for ``cpms demo``: one under discussion, one urgent in the ERN queue, one closed.

Built from the demo patients (core.patients.demo) and users (core.identity); a demo expert at
another hospital of ERN RND joins the discussion.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta, timezone

EXPERT = ("expert", "Dr. Piotr Kowalski", 'Instytut "Pomnik – Centrum Zdrowia Dziecka"')


async def load(ctx) -> None:
    from core.identity import DEMO_PASSWORD, create_user
    from core.panels.templates_store import current_template, install_shipped
    from core.patients.tables import Diagnosis, GeneticFinding, Patient, Phenotype

    patients = ctx.extra.get("patients") or []
    hp, coordinator = ctx.users.get("hp"), ctx.users.get("coordinator")
    if len(patients) < 3 or not hp or not coordinator:
        return
    ern = ctx.erns["ERN RND"]
    role, name, hospital = EXPERT
    expert = await create_user(f"{role}@demo.cpms.eu", name, DEMO_PASSWORD.format(role=role), ctx.hcps[hospital], [("hp", ern)])
    ctx.users[role] = expert
    await install_shipped(ern, "ern_rnd_template.json", coordinator)
    template = await current_template(ern)
    rows = {r["pseudonym"]: r for r in await Patient.select().where(Patient.pseudonym.is_in(patients))}
    mila, jonas, aylin = (rows[p] for p in patients[:3])
    now = datetime.now(timezone.utc)

    async def shares_of(patient: dict) -> list[tuple[str, int | None]]:
        out: list[tuple[str, int | None]] = [("summary", None)]
        for kind, table in (("diagnosis", Diagnosis), ("phenotype", Phenotype), ("genetic", GeneticFinding)):
            out += [(kind, r["id"]) for r in await table.select(table.id).where(table.patient == patient["id"])]
        return out

    answers = {
        "question_type": "Diagnosis", "question_context": "Progressive gait ataxia since age 7, now with dysarthria and slow saccades.",
        "onset_age": 7, "movement_disorder": "Ataxia", "sara": 14.5, "course": "Slowly progressive", "genetic_testing_done": "Yes",
        "genetic_tests": ["Gene panel"], "genetic_results": "ATXN2 NM_002973.4:c.496C>T, heterozygous, VUS.",
        "working_diagnosis": {"label": "Spinocerebellar ataxia type 2", "system": "ORPHA", "code": "98756"},
        "diagnosis_certainty": "Suspected", "consent_ern": "Yes",
    }
    discussing = await _panel(
        mila, ern, hp, template, answers, status="open", assembler=coordinator, kind="diagnostic", urgency="soon",
        title="Progressive ataxia with an ATXN2 variant of uncertain significance",
        question="Does the ATXN2 variant explain the progressive ataxia, or should we look for a repeat expansion elsewhere? Which test next?",
        specialties="neurogenetics, paediatric movement disorders",
        shares=await shares_of(mila), members=[(coordinator, "accepted"), (expert, "accepted")],
        steps=[("created", "", "draft", hp), ("submit", "draft", "submitted", hp), ("take", "submitted", "assembling", coordinator),
               ("invited", "", "", coordinator), ("open", "assembling", "open", coordinator)],
        at=now - timedelta(days=6),
    )
    await _discussion(discussing, hp, coordinator, expert, now)
    await _panel(
        aylin, ern, hp, template, {}, status="submitted", urgency="urgent", kind="diagnostic",
        title="Infantile epileptic encephalopathy, deteriorating",
        question="Rapid regression over four weeks despite two anti-seizure medications. Metabolic or genetic cause we have missed?",
        specialties="paediatric epilepsy, metabolic disease", shares=await shares_of(aylin), members=[],
        steps=[("created", "", "draft", hp), ("submit", "draft", "submitted", hp)], at=now - timedelta(hours=5),
    )
    closed = await _panel(
        jonas, ern, hp, template, {}, status="closed", assembler=coordinator, kind="therapeutic", urgency="routine",
        title="LGMD R1: physiotherapy and cardiac follow-up plan",
        question="Confirmed CAPN3-related LGMD. Which follow-up schedule and which exercise programme do you recommend?",
        specialties="neuromuscular", shares=await shares_of(jonas), members=[(coordinator, "accepted"), (expert, "accepted")],
        steps=[("created", "", "draft", hp), ("submit", "draft", "submitted", hp), ("take", "submitted", "assembling", coordinator),
               ("open", "assembling", "open", coordinator), ("propose", "open", "outcome_review", hp), ("close", "outcome_review", "closed", hp)],
        at=now - timedelta(days=40),
    )
    await _closed_outcome(ctx.settings, closed, jonas, hp, expert, now - timedelta(days=30))


async def _panel(patient, ern, hp, template, answers, *, status, title, question, kind, urgency, specialties, shares, members, steps, at, assembler=None) -> int:
    from core.panels.tables import Panel, PanelMember, PanelShare, PanelTransition

    panel = Panel(
        patient=patient["id"], ern=ern, status=status, title=title, question=question, kind=kind, urgency=urgency,
        specialties=specialties, form_template=template["id"], form_label=template["label"],
        form_answers=json.dumps(answers), created_by=hp, lead=hp, assembler=assembler, created_at=at, updated_at=at,
        submitted_at=at if status != "draft" else None, closed_at=at + timedelta(days=10) if status == "closed" else None,
    )
    await panel.save()
    await PanelShare.insert(*[PanelShare(panel=panel.id, kind=k, ref_id=r, shared_by=hp) for k, r in shares])
    if members:
        await PanelMember.insert(*[PanelMember(panel=panel.id, user=u, status=s, role="member", invited_by=assembler or hp, responded_at=at) for u, s in members])
    await PanelTransition.insert(*[
        PanelTransition(panel=panel.id, action=a, from_status=f, to_status=t, actor=who, at=at + timedelta(hours=i)) for i, (a, f, t, who) in enumerate(steps)
    ])
    return panel.id


async def _discussion(panel_id: int, hp: int, coordinator: int, expert: int, now: datetime) -> None:
    from core.panels.tables import DataRequest, Meeting, Mention, Message

    first = Message(panel=panel_id, author=hp, body="Onset at 7, SARA 14.5 now. The ATXN2 variant is a missense change, not a repeat expansion.", created_at=now - timedelta(days=4))
    await first.save()
    reply = Message(panel=panel_id, author=expert, parent=first.id, created_at=now - timedelta(days=3),
                    body="@Lena Weber an ATXN2 missense variant rarely explains SCA2. I would test the common SCA repeat panel and FXN first.")
    await reply.save()
    await Mention.insert(Mention(message=reply.id, user=hp))
    await Message.insert(Message(panel=panel_id, author=coordinator, body="Agreed. Let us discuss the MRI at the meeting on Thursday.", created_at=now - timedelta(days=2)))
    await DataRequest.insert(DataRequest(panel=panel_id, asked_by=expert, text="Could you share the latest brain MRI report (cerebellar atrophy pattern)?", created_at=now - timedelta(days=3)))
    start = (now + timedelta(days=3)).replace(hour=15, minute=0, second=0, microsecond=0)
    await Meeting.insert(Meeting(
        panel=panel_id, uid=f"{secrets.token_hex(16)}@cpms", starts_at=start, minutes=45, timezone="Europe/Berlin",
        agenda="1. MRI review\n2. Next genetic test\n3. Physiotherapy", room_url=f"https://meet.jit.si/cpms-{secrets.token_urlsafe(12)}",
        created_by=coordinator,
    ))


async def _closed_outcome(settings, panel_id: int, patient: dict, hp: int, expert: int, signed_at: datetime) -> None:
    """A signed outcome with its PDF report filed in the patient's record, as the real flow leaves it."""
    from core.crypto import keyring
    from core.panels.report import KIND, document_title, file_name, outcome_pdf, report_data, store_pdf
    from core.panels.tables import Message, Outcome, OutcomeComment
    from core.patients.documents import _context
    from core.patients.tables import Document

    await Message.insert(Message(panel=panel_id, author=expert, body="Annual echocardiography and a moderate aerobic programme; avoid eccentric training.", created_at=signed_at - timedelta(days=5)))
    outcome = Outcome(
        panel=panel_id, findings="CAPN3-related limb-girdle muscular dystrophy (LGMD R1), confirmed genetically; no cardiac involvement so far.",
        diagnosis_label="Autosomal recessive limb-girdle muscular dystrophy type 2A", diagnosis_system="ORPHA", diagnosis_code="267",
        recommendations="Cardiology and respiratory function follow-up every year. Supervised moderate aerobic exercise.",
        treatment_plan="Physiotherapy twice weekly for 12 weeks, then home programme; review in 12 months.",
        updated_by=hp, updated_at=signed_at, signed_by=hp, signed_at=signed_at,
    )
    await outcome.save()
    await OutcomeComment.insert(OutcomeComment(panel=panel_id, author=expert, body="Agree with the plan.", created_at=signed_at - timedelta(days=1)))
    stored = await store_pdf(settings, outcome_pdf(await report_data(panel_id, signed={hp: signed_at}, generated_at=signed_at)))
    ring = keyring(settings)
    context = _context(patient["pseudonym"])
    doc = Document(
        patient=patient["id"], kind=KIND, title=ring.encrypt(document_title(panel_id), context), filename=ring.encrypt(file_name(panel_id), context),
        content_type=stored.content_type, size=stored.size, sha256=stored.sha256, storage_key=stored.key, uploaded_by=hp,
    )
    await doc.save()
    await Outcome.update({Outcome.document: doc.id}).where(Outcome.panel == panel_id)
