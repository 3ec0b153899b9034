"""Research demo: 300 invented patients across the hospitals of ERN RND and ERN EURO-NMD (most with
registry consent, some refused or withdrawn: visibly left out), and an approved project for the demo
researcher with a saved cohort."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone

from plugins.research import synthetic

DEMO_PATIENTS = 300
#: Every invented research patient's family name (tests search research pages for it).
DEMO_FAMILY_NAME = "Syntheticperson"


async def load(ctx) -> None:
    from core.orgs.tables import HcpErn
    from core.patients import identity as ident
    from core.patients.nicknames import random_nickname
    from core.patients.tables import Consent, Diagnosis, GeneticFinding, Patient, PatientErn, Phenotype

    settings = ctx.settings
    hp = ctx.users.get("hp")
    members: dict[str, list[int]] = {}
    acronyms = {v: k for k, v in ctx.erns.items()}
    # Other hospitals than the demo HP's: the invented cohort stays out of the demo users' own lists.
    from core.identity.tables import User

    own = {u["hcp"] for u in await User.select(User.hcp).where(User.id.is_in([i for i in ctx.users.values() if i] or [-1]))}
    for row in await HcpErn.select(HcpErn.hcp, HcpErn.ern):
        if row["hcp"] not in own:
            members.setdefault(acronyms.get(row["ern"], ""), []).append(row["hcp"])
    used = {r["nickname"] for r in await Patient.select(Patient.nickname)}
    rows = []
    people = synthetic.people(DEMO_PATIENTS)
    for person in people:
        hospitals = sorted(members.get(person["disease"].ern, [])) or [min(ctx.hcps.values())]
        hcp = hospitals[person["i"] % len(hospitals)]
        nickname = random_nickname()
        while nickname in used:
            nickname = random_nickname()
        used.add(nickname)
        pseudonym = ident.new_pseudonym()
        who = {"given_name": f"Nr{person['i']:03d}", "family_name": DEMO_FAMILY_NAME, "date_of_birth": person["birth"].isoformat(),
                   "local_record_number": f"SYN-{person['i']:05d}"}
        record, name_dob = ident.duplicate_keys(settings, hcp, who)
        rows.append(Patient(
            pseudonym=pseudonym, nickname=nickname, hcp=hcp, sex=person["sex"], summary="",
            identity=ident.encrypt_identity(settings, pseudonym, who), dup_record=record, dup_name_dob=name_dob, created_by=hp,
        ))
    async with Patient._meta.db.transaction():
        for start in range(0, len(rows), 100):
            await Patient.insert(*rows[start:start + 100])
        ids = {r["pseudonym"]: r["id"] for r in await Patient.select(Patient.id, Patient.pseudonym).where(Patient.pseudonym.is_in([p.pseudonym for p in rows]))}
        ern_rows, consents, diagnoses, phenotypes, findings = [], [], [], [], []
        for patient, person in zip(rows, people):
            pid = ids[patient.pseudonym]
            d = person["disease"]
            enrolled = datetime.combine(person["enrolled"], time(10), tzinfo=timezone.utc)
            ern_rows.append(PatientErn(patient=pid, ern=ctx.erns[d.ern], enrolled_by=hp, enrolled_at=enrolled))
            consents.append(Consent(patient=pid, kind="care", status="given", date=person["enrolled"], form_version="ERN consent v3", recorded_by=hp))
            if person["registry"] == "withdrawn":
                consents.append(Consent(patient=pid, kind="registry", status="given", date=person["enrolled"], form_version="ERN consent v3", recorded_by=hp))
            if person["registry"]:
                consents.append(Consent(patient=pid, kind="registry", status=person["registry"], date=min(date.today(), person["enrolled"] + timedelta(days=200 if person["registry"] == "withdrawn" else 0)), form_version="ERN consent v3", recorded_by=hp))
            if person["research"]:
                consents.append(Consent(patient=pid, kind="research", status="given", date=person["enrolled"], form_version="ERN consent v3", recorded_by=hp))
            diagnoses.append(Diagnosis(patient=pid, label=d.name, system="ORPHA", code=d.orpha,
                                       codings=json.dumps([{"system": "ICD-10", "code": d.icd10, "display": ""}]),
                                       status="confirmed" if person["confirmed"] else "suspected", onset=person["onset"], updated_by=hp,
                                       updated_at=enrolled + timedelta(days=90)))
            for code in person["phenotypes"]:
                phenotypes.append(Phenotype(patient=pid, label=code, system="HPO", code=code, observed=True, updated_by=hp))
            for code in person["absent"]:
                phenotypes.append(Phenotype(patient=pid, label=code, system="HPO", code=code, observed=False, updated_by=hp))
            if person["gene"]:
                findings.append(GeneticFinding(patient=pid, gene=person["gene"], variant=f"{person['gene']}:c.{100 + person['i']}del",
                                               zygosity="heterozygous", classification=person["class"], updated_by=hp))
        for table, items in ((PatientErn, ern_rows), (Consent, consents), (Diagnosis, diagnoses), (Phenotype, phenotypes), (GeneticFinding, findings)):
            for start in range(0, len(items), 200):
                await table.insert(*items[start:start + 200])
    ctx.extra["research_patients"] = list(ids.values())
    await _project(ctx)
    from plugins.research.projection import refresh_all

    await refresh_all(ctx.host)


async def _project(ctx) -> None:
    """An approved project for the demo researcher (ERN RND and ERN EURO-NMD), with a saved cohort."""
    import base64
    import secrets

    from core.crypto import keyring
    from plugins.research.tables import ResearchCohort, ResearchProject, ResearchProjectErn

    researcher = ctx.users.get("researcher")
    coordinator = ctx.users.get("coordinator")
    if researcher is None:
        return
    key = keyring(ctx.settings).encrypt(base64.b64encode(secrets.token_bytes(32)).decode(), "research-project")
    project = (await ResearchProject.insert(ResearchProject(
        title="Natural history of hereditary ataxias", aims="Describe age at onset, time to diagnosis and genetic findings in hereditary ataxias and spastic paraplegias across ERN RND.",
        ethics_ref="EA2/187/26 (Charité ethics committee)", data_wanted="Consented patients with a hereditary ataxia or spastic paraplegia: sex, ages, diagnoses, phenotypes, genes.",
        starts=date.today() - timedelta(days=30), ends=date.today() + timedelta(days=700), researcher=researcher, id_key=key,
    )).returning(ResearchProject.id))[0]["id"]
    now = datetime.now(timezone.utc)
    await ResearchProjectErn.insert(
        ResearchProjectErn(project=project, ern=ctx.erns["ERN RND"], status="approved", reason="Sound aims; ethics approval on file.", decided_by=coordinator, decided_at=now),
        ResearchProjectErn(project=project, ern=ctx.erns["ERN EURO-NMD"], status="approved", reason="", decided_by=coordinator, decided_at=now),
    )
    ataxias = {"op": "or", "items": [
        {"field": "diagnosis", "system": "ORPHA", "code": code, "descendants": True} for code in ("98756", "98757", "95")]}
    await ResearchCohort.insert(ResearchCohort(project=project, name="Hereditary ataxias (SCA2, SCA3, Friedreich)",
                                               definition=json.dumps(ataxias, sort_keys=True), created_by=researcher))
    # A project still waiting for a decision: the coordinator's review page has something to do.
    pending = (await ResearchProject.insert(ResearchProject(
        title="Spastic paraplegia gene panel yield", aims="Estimate the diagnostic yield of gene panels in hereditary spastic paraplegia.",
        ethics_ref="2026-114-NL (Radboudumc CMO)", data_wanted="Patients with ORPHA:685: genes and variant classes, ages at onset.",
        starts=date.today(), ends=date.today() + timedelta(days=365), researcher=researcher,
        id_key=keyring(ctx.settings).encrypt(base64.b64encode(secrets.token_bytes(32)).decode(), "research-project"),
    )).returning(ResearchProject.id))[0]["id"]
    await ResearchProjectErn.insert(ResearchProjectErn(project=pending, ern=ctx.erns["ERN RND"]))
