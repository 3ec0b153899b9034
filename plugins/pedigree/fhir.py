"""The GA4GH Pedigree FHIR representation: a Bundle (collection) holding a Composition (the pedigree),
one Patient per individual and one FamilyMemberHistory per relationship, coded with the KIN ontology.

Other tools read the standard parts: sex (``gender``), life status, proband, and the relationships
(biological mother/father/parent, partner, consanguineous and separated partners, monozygotic and
polyzygotic twins). What FHIR and KIN have no field for (statuses per condition, carrier, ages,
adoption, pregnancies, genotypes, notes, birth order) travels in one CPMS extension per Patient, and
the condition legend in one on the Composition, so :func:`import_bundle` of :func:`export_bundle`
gives back the very same pedigree (``serial.to_dict`` equal). An import without those extensions
(another tool's file) keeps what the standard parts say.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from plugins.pedigree import serial
from plugins.pedigree.model import Pedigree, PedigreeError, validate

KIN = "http://purl.org/ga4gh/kin.fhir"
IG = "http://purl.org/ga4gh/pedigree-fhir-ig"
PROFILE = {
    "Composition": f"{IG}/StructureDefinition/Pedigree",
    "Patient": f"{IG}/StructureDefinition/PedigreeIndividual",
    "FamilyMemberHistory": f"{IG}/StructureDefinition/PedigreeRelationship",
}
SECTION = f"{IG}/CodeSystem/SectionType"
RELATIVE = "http://hl7.org/fhir/StructureDefinition/familymemberhistory-patient-record"
EXT_INDIVIDUAL = "https://cpms.eu/fhir/StructureDefinition/pedigree-individual"
EXT_PEDIGREE = "https://cpms.eu/fhir/StructureDefinition/pedigree-conditions"
# KIN codes (http://purl.org/ga4gh/kin.owl): the individual -> the relative
KIN_CODES = {
    "KIN:003": "isBiologicalParentOf", "KIN:010": "isMonozygoticMultipleBirthSiblingOf",
    "KIN:011": "isPolyzygoticMultipleBirthSiblingOf", "KIN:026": "isPartnerOf", "KIN:027": "isBiologicalMotherOf",
    "KIN:028": "isBiologicalFatherOf", "KIN:030": "isConsanguineousPartnerOf", "KIN:050": "isSeparatedPartnerOf",
    "KIN:051": "isSeparatedConsanguineousPartnerOf",
}
PARENT_CODES = {"KIN:003", "KIN:027", "KIN:028"}
PARTNER_CODES = {("KIN:026"): (False, False), "KIN:030": (True, False), "KIN:050": (False, True), "KIN:051": (True, True)}
TWIN_CODES = {"KIN:010": True, "KIN:011": False}


def _ref(kind: str, id: str) -> dict:
    return {"reference": f"{kind}/{id}"}


def _relation(n: int, who: str, code: str, relative: str) -> dict:
    return {
        "resourceType": "FamilyMemberHistory", "id": f"rel{n}", "meta": {"profile": [PROFILE["FamilyMemberHistory"]]},
        "extension": [{"url": RELATIVE, "valueReference": _ref("Patient", relative)}],
        "status": "completed", "patient": _ref("Patient", who),
        "relationship": {"coding": [{"system": KIN, "code": code, "display": KIN_CODES[code]}]},
    }


def export_bundle(ped: Pedigree, when: str | None = None) -> dict:
    """The Bundle; ``when`` (ISO date, default today) is the Composition's date."""
    from datetime import date

    validate(ped)
    patients, relations = [], []
    for ind in ped.individuals.values():
        patient = {
            "resourceType": "Patient", "id": ind.id, "meta": {"profile": [PROFILE["Patient"]]},
            "extension": [{"url": EXT_INDIVIDUAL, "valueString": json.dumps(asdict(ind), sort_keys=True)}],
            "gender": ind.sex, "deceasedBoolean": ind.deceased,
        }
        if ind.birth_year is not None:
            patient["birthDate"] = f"{ind.birth_year:04d}"
        patients.append(patient)
    for p in ped.partnerships:
        code = next(c for c, flags in PARTNER_CODES.items() if flags == (p.consanguineous, p.separated))
        relations.append(_relation(len(relations) + 1, p.a, code, p.b))
        for child in p.children:
            for parent in (p.a, p.b):
                sex = ped.individuals[parent].sex
                code = {"female": "KIN:027", "male": "KIN:028"}.get(sex, "KIN:003")
                relations.append(_relation(len(relations) + 1, parent, code, child))
    for group in ped.twins:
        code = "KIN:010" if group.monozygotic else "KIN:011"
        for other in group.ids[1:]:
            relations.append(_relation(len(relations) + 1, group.ids[0], code, other))
    sections = []
    proband = next((i.id for i in ped.individuals.values() if i.proband), None)
    if proband:
        sections.append(_section("proband", "Proband", [_ref("Patient", proband)]))
    sections.append(_section("individuals", "Individuals", [_ref("Patient", p["id"]) for p in patients]))
    sections.append(_section("relationships", "Relationships", [_ref("FamilyMemberHistory", r["id"]) for r in relations]))
    composition = {
        "resourceType": "Composition", "id": "pedigree", "meta": {"profile": [PROFILE["Composition"]]},
        "extension": [{"url": EXT_PEDIGREE, "valueString": json.dumps(
            {"family_id": ped.family_id, "conditions": [asdict(c) for c in ped.conditions.values()]}, sort_keys=True)}],
        "status": "final", "type": {"coding": [{"system": "http://snomed.info/sct", "code": "422432008",
                                                "display": "Family history section"}]},
        "date": when or date.today().isoformat(), "author": [{"display": "CPMS"}],
        "title": "Pedigree", "section": sections,
    }
    if proband:
        composition["subject"] = _ref("Patient", proband)
    resources = [composition, *patients, *relations]
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:cpms:{r['resourceType']}/{r['id']}", "resource": r} for r in resources]}


def _section(code: str, title: str, entries: list[dict]) -> dict:
    return {"title": title, "code": {"coding": [{"system": SECTION, "code": code}]}, "entry": entries}


def _id_of(reference, problems: list[str], kind: str = "Patient") -> str | None:
    ref = reference.get("reference", "") if isinstance(reference, dict) else ""
    if not ref.startswith(f"{kind}/"):
        problems.append(f"expected a reference to a {kind}, got {ref!r}")
        return None
    return ref.split("/", 1)[1]


def import_bundle(bundle) -> Pedigree:
    """The pedigree of a GA4GH Pedigree FHIR Bundle; :class:`PedigreeError` lists what is wrong."""
    problems: list[str] = []
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise PedigreeError(["not a FHIR Bundle"])
    resources = [e.get("resource") for e in bundle.get("entry", []) if isinstance(e, dict)]
    resources = [r for r in resources if isinstance(r, dict)]
    compositions = [r for r in resources if r.get("resourceType") == "Composition"]
    data: dict = {"format": serial.FORMAT, "family_id": "FAM1", "conditions": [], "individuals": [],
                  "partnerships": [], "twins": []}
    proband = None
    if compositions:
        extra = _extension(compositions[0], EXT_PEDIGREE, problems)
        if extra:
            data["family_id"] = extra.get("family_id", "FAM1")
            data["conditions"] = extra.get("conditions", [])
        for section in compositions[0].get("section", []):
            codes = {c.get("code") for c in section.get("code", {}).get("coding", [])}
            if "proband" in codes and section.get("entry"):
                proband = _id_of(section["entry"][0], problems)
    for r in resources:
        if r.get("resourceType") != "Patient":
            continue
        stored = _extension(r, EXT_INDIVIDUAL, problems)
        if stored is None:  # another tool's Patient: what the standard fields say
            stored = {"id": r.get("id"), "sex": r.get("gender") if r.get("gender") in ("male", "female") else "unknown",
                      "deceased": bool(r.get("deceasedBoolean") or r.get("deceasedDateTime"))}
            year = str(r.get("birthDate", ""))[:4]
            if year.isdecimal():
                stored["birth_year"] = int(year)
            stored["proband"] = r.get("id") == proband
        elif stored.get("id") != r.get("id"):
            problems.append(f"Patient {r.get('id')!r}: its CPMS extension describes {stored.get('id')!r}")
        data["individuals"].append(stored)
    parents: dict[str, list[str]] = {}
    partnerships: dict[frozenset, dict] = {}
    twins: dict[str, dict] = {}
    for r in resources:
        if r.get("resourceType") != "FamilyMemberHistory":
            continue
        who = _id_of(r.get("patient"), problems)
        relative = next((_id_of(e.get("valueReference"), problems) for e in r.get("extension", [])
                         if e.get("url") == RELATIVE), None)
        codes = [c.get("code") for c in r.get("relationship", {}).get("coding", []) if c.get("system") == KIN]
        if who is None or relative is None or not codes:
            problems.append(f"FamilyMemberHistory {r.get('id')!r}: needs a patient, a relative and a KIN code")
            continue
        code = codes[0]
        if code in PARTNER_CODES:
            consanguineous, separated = PARTNER_CODES[code]
            key = frozenset((who, relative))
            if key not in partnerships:
                partnerships[key] = {"a": who, "b": relative, "consanguineous": consanguineous, "separated": separated,
                                     "children": []}
                data["partnerships"].append(partnerships[key])
        elif code in PARENT_CODES:
            parents.setdefault(relative, []).append(who)
            if len(parents[relative]) == 2:
                key = frozenset(parents[relative])
                if key not in partnerships:
                    a, b = parents[relative]
                    partnerships[key] = {"a": a, "b": b, "consanguineous": False, "separated": False, "children": []}
                    data["partnerships"].append(partnerships[key])
                partnerships[key]["children"].append(relative)
        elif code in TWIN_CODES:
            group = twins.get(who)
            if group is None:
                group = twins[who] = {"ids": [who], "monozygotic": TWIN_CODES[code]}
                data["twins"].append(group)
            group["ids"].append(relative)
        else:
            problems.append(f"FamilyMemberHistory {r.get('id')!r}: KIN code {code} is not one CPMS draws")
    for child, ps in parents.items():
        if len(ps) != 2:
            problems.append(f"{child} has {len(ps)} biological parent(s) recorded; a pedigree needs both or neither")
    if problems:
        raise PedigreeError(problems)
    return serial.from_dict(data)


def _extension(resource: dict, url: str, problems: list[str]):
    for e in resource.get("extension", []) or []:
        if isinstance(e, dict) and e.get("url") == url:
            try:
                return json.loads(e.get("valueString", ""))
            except ValueError:
                problems.append(f"{resource.get('resourceType')} {resource.get('id')!r}: unreadable CPMS extension")
    return None
