"""A Phenopackets v2 ``Family`` (JSON, the schema's camelCase field names): the proband's and each
relative's phenopacket (sex, vital status, diseases) and the PED-like ``pedigree`` block.

Built as JSON and then checked against the schema with the ``phenopackets`` package (GA4GH's
protobuf classes): a field the schema lacks or a wrong enum value fails here, not in the reader's
tool. Like PED, the
pedigree block has one affected status, for the condition chosen (default: the first of the legend),
so it is lossy; conditions with a code become disease terms (``ORPHA:399``), uncoded ones are left out
of ``diseases`` (a term needs an id) and listed in the returned warnings.
"""

from __future__ import annotations

from datetime import datetime, timezone

from google.protobuf import json_format
from phenopackets import Family

from plugins.pedigree.model import Pedigree, validate

SCHEMA_VERSION = "2.0"
SEX = {"male": "MALE", "female": "FEMALE", "unknown": "UNKNOWN_SEX"}
AFFECTED = {"affected": "AFFECTED", "unaffected": "UNAFFECTED"}  # anything else: MISSING


def _meta(created: str) -> dict:
    return {"created": created, "createdBy": "CPMS", "phenopacketSchemaVersion": SCHEMA_VERSION, "resources": []}


def export_family(ped: Pedigree, labels: dict[str, str], condition: str | None = None,
                  created: str | None = None) -> tuple[dict, list[str]]:
    """(Family JSON, warnings). Ids are the generation/number labels (``labels``), never names."""
    validate(ped)
    created = created or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    warnings: list[str] = []
    chosen = condition or next(iter(ped.conditions), None)
    uncoded = [c.label for c in ped.conditions.values() if not (c.system and c.code)]
    if uncoded:
        warnings.append(f"conditions without a code are not listed as diseases: {', '.join(uncoded)}")
    if len(ped.conditions) > 1:
        warnings.append(f"the pedigree block gives the affected status for one condition only "
                        f"({ped.conditions[chosen].label})")

    def name(iid: str) -> str:
        return labels.get(iid, iid)

    def packet(iid: str) -> dict:
        ind = ped.individuals[iid]
        subject = {"id": name(iid), "sex": SEX[ind.sex],
                   "vitalStatus": {"status": "DECEASED" if ind.deceased else "ALIVE"}}
        diseases = []
        for cid, status in ind.conditions.items():
            c = ped.conditions[cid]
            if not (c.system and c.code) or status not in ("affected", "unaffected"):
                continue
            disease = {"term": {"id": f"{c.system}:{c.code}", "label": c.label}}
            if status == "unaffected":
                disease["excluded"] = True
            diseases.append(disease)
        out = {"id": f"{ped.family_id}-{name(iid)}", "subject": subject, "metaData": _meta(created)}
        if diseases:
            out["diseases"] = diseases
        return out

    index = ped.parents_index()
    persons = []
    for iid, ind in ped.individuals.items():
        parents = ped.parents_of(iid)
        father, mother = (parents if parents else ("0", "0"))
        status = AFFECTED.get(ind.conditions.get(chosen, ""), "MISSING") if chosen else "MISSING"
        persons.append({"familyId": ped.family_id, "individualId": name(iid),
                        "paternalId": name(father) if father != "0" else "0",
                        "maternalId": name(mother) if mother != "0" else "0",
                        "sex": SEX[ind.sex], "affectedStatus": status})
    proband = next((i for i, x in ped.individuals.items() if x.proband), None)
    family = {
        "id": ped.family_id,
        "relatives": [packet(i) for i in ped.individuals if i != proband],
        "pedigree": {"persons": persons},
        "metaData": _meta(created),
    }
    if proband:
        family["proband"] = packet(proband)
        p = index.get(proband)
        if p is not None and p.consanguineous:
            family["consanguinousParents"] = True  # sic: the schema's spelling
    return _checked(family), warnings


def _checked(family: dict) -> dict:
    """The family as the phenopackets schema reads and prints it (ParseError on a schema mismatch)."""
    json_format.ParseDict(family, Family())
    # Our JSON, not the package's print of it: that drops enum defaults (affectedStatus MISSING) that
    # PED-minded readers expect, or with defaults on, fills every empty list of the schema.
    return family
