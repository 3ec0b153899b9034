"""Demo patients (invented people) for ``cpms demo``: enrolled at Charité in ERN RND by the demo HP."""

from __future__ import annotations

from datetime import date

from core.patients import coded
from core.patients import identity as ident
from core.patients.nicknames import unique_nickname

PEOPLE = [
    {
        "identity": {"given_name": "Mila", "family_name": "Hoffmann", "date_of_birth": "2012-03-14", "local_record_number": "CH-0042117"},
        "sex": "female", "summary": "Progressive gait ataxia since age 7; dysarthria; slow saccades.",
        "diagnoses": [("Spinocerebellar ataxia type 2", "ORPHA", "98756", "suspected", "2019")],
        "codings": [[{"system": "ICD-10", "code": "G11.2", "display": "Late-onset cerebellar ataxia"}, {"system": "OMIM", "code": "183090", "display": "Spinocerebellar ataxia 2"}]],
        "phenotype": [("Gait ataxia", "HPO", "HP:0002066", True), ("Dysarthria", "HPO", "HP:0001260", True), ("Seizure", "HPO", "HP:0001250", False)],
        "genetics": [("ATXN2", "NM_002973.4:c.496C>T", "heterozygous", "uncertain significance")],
        "consents": [("care", "given"), ("sharing", "given"), ("registry", "given"), ("research", "refused")],
    },
    {
        "identity": {"given_name": "Jonas", "family_name": "Becker", "date_of_birth": "1987-11-02", "local_record_number": "CH-0050931"},
        "sex": "male", "summary": "Adult-onset proximal weakness, raised CK.",
        "diagnoses": [("Limb-girdle muscular dystrophy", "ORPHA", "263", "confirmed", "2021")],
        "codings": [[{"system": "ICD-10", "code": "G71.0", "display": "Muscular dystrophy"}]],
        "phenotype": [("Proximal muscle weakness", "HPO", "HP:0003701", True), ("Elevated circulating creatine kinase concentration", "HPO", "HP:0003236", True)],
        "genetics": [("CAPN3", "NM_000070.3:c.550del", "homozygous", "pathogenic")],
        "consents": [("care", "given"), ("sharing", "given")],
    },
    {
        "identity": {"given_name": "Aylin", "family_name": "Yıldız", "date_of_birth": "2019-06-30", "local_record_number": "CH-0061008"},
        "sex": "female", "summary": "Infantile-onset epilepsy with developmental delay; work-up ongoing.",
        "diagnoses": [("Developmental and epileptic encephalopathy", "", "", "suspected", "infancy")],
        "phenotype": [("Global developmental delay", "HPO", "HP:0001263", True)],
        "genetics": [],
        "consents": [("care", "given")],
    },
]


async def load(ctx) -> None:
    from core.patients.tables import Consent, Diagnosis, GeneticFinding, Patient, PatientErn, Phenotype

    settings = ctx.settings
    hcp = ctx.hcps["Charité – Universitätsmedizin Berlin"]
    ern = ctx.erns["ERN RND"]
    hp = ctx.users.get("hp")
    for person in PEOPLE:
        pseudonym = ident.new_pseudonym()
        record, name_dob = ident.duplicate_keys(settings, hcp, person["identity"])
        patient = Patient(
            pseudonym=pseudonym, nickname=await unique_nickname(), hcp=hcp, sex=person["sex"], summary=person["summary"],
            identity=ident.encrypt_identity(settings, pseudonym, person["identity"]), dup_record=record, dup_name_dob=name_dob, created_by=hp,
        )
        await patient.save()
        await PatientErn.insert(PatientErn(patient=patient.id, ern=ern, enrolled_by=hp))
        await Consent.insert(*[
            Consent(patient=patient.id, kind=k, status=s, date=date(2026, 9, 15), form_version="ERN-RND consent v3.1", recorded_by=hp)
            for k, s in person["consents"]
        ])
        for i, (label, system, code, status, onset) in enumerate(person["diagnoses"]):
            codings = coded.dump(person.get("codings", [])[i] if i < len(person.get("codings", [])) else [])
            await Diagnosis.insert(Diagnosis(patient=patient.id, label=label, system=system, code=code, codings=codings, status=status, onset=onset, updated_by=hp))
        for label, system, code, observed in person["phenotype"]:
            await Phenotype.insert(Phenotype(patient=patient.id, label=label, system=system, code=code, observed=observed, updated_by=hp))
        for gene, variant, zygosity, classification in person["genetics"]:
            await GeneticFinding.insert(GeneticFinding(patient=patient.id, gene=gene, variant=variant, zygosity=zygosity, classification=classification, updated_by=hp))
        ctx.extra.setdefault("patients", []).append(pseudonym)
