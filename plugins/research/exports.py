"""Anonymised tables and export files, each with a manifest, each recorded.

``anonymised`` fetches a cohort's records (within consent and the project's scope) and k-anonymises
them (``anonymise``) with the project's research identifiers; the views page shows its first rows
and the export page its report (k, suppressed rows, prosecutor risk) before anything is downloaded.
``export`` writes a ZIP: the data, a data dictionary where the format has one, and
``manifest.json`` (project, cohort, k, rows, who, when, the anonymisation report, the checksum of
the data); the export is recorded with the patients it held (``ResearchExport``), so the
coordinators can list exports made before a patient withdrew.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone

from plugins.research import builder, projects, query
from plugins.research.anonymise import anonymise
from plugins.research.model import Code
from plugins.research.projection import PREFIX

KINDS = {
    "cde": "EU RD Platform common data elements (CSV, with data dictionary)",
    "phenopackets": "GA4GH Phenopackets v2 (one JSON file per patient)",
    "rows": "Anonymised rows (CSV)",
}
ROW_COLUMNS = ("research_id", "sex", "age_band_enrolment", "age_band_onset", "age_band_diagnosis", "enrolment_period",
               "country", "erns", "diagnoses", "diagnosis_confirmed", "phenotypes", "excluded_phenotypes", "genes",
               "variant_classes", "outcome", "research_contact")


def _from_term(value: str) -> tuple[str, str]:
    for system, prefix in PREFIX.items():
        if prefix and value.startswith(prefix):
            return system, value[len(prefix):]
    return "HPO", value


@dataclass(frozen=True)
class Table:
    rows: list  # AnonymisedRecord
    report: object  # anonymise.Report
    #: The patients behind the rows, for the export record (never written into the export itself).
    subjects: list[int]


async def anonymised(host, settings, project: projects.Project, definition: dict, k: int) -> Table:
    found: dict[str, list[str]] = {}
    records = await query.rows(definition, query.Scope(project.approved_erns), ancestors=found)
    ids = await projects.id_function(settings, project.id)

    def ancestors(code: Code) -> list[Code]:
        from plugins.research.projection import term_value

        return [Code(*_from_term(v)) for v in found.get(term_value(code.system, code.code), [])]

    by_id = {r.subject_id: ids(r.subject_id) for r in records}
    result = anonymise(records, k=k, research_id=lambda r: by_id[r.subject_id], ancestors=ancestors)
    patient_of = {rid: pid for pid, rid in by_id.items()}
    return Table(result.rows, result.report, sorted(patient_of[row.research_id] for row in result.rows))


async def displays(host, definition: dict, scope: query.Scope) -> dict[str, str]:
    """Names of the codes the charts show, from the coding plugin when it is there (else codes alone)."""
    terms = [row["value"] for kind in ("diagnosis", "phenotype") for row in await query.group_terms(definition, scope, kind)]
    return await displays_of(host, terms)


async def displays_of(host, terms: list[str]) -> dict[str, str]:
    """``{term value: display name}`` for research term values (``ORPHA:98756``, ``HP:0001250``)."""
    from core.events import await_me_maybe
    from plugins.research.projection import term_value

    by_system: dict[str, list[str]] = {}
    for term in terms:
        system, code = _from_term(term)
        by_system.setdefault(system, []).append(code)
    out: dict[str, str] = {}
    for system, codes in by_system.items():
        names = await await_me_maybe(host.hook.code_displays(system=system, codes=codes)) or {}
        out.update({term_value(system, c): n for c, n in names.items()})
    return out


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        parts = []
        for v in value:
            if isinstance(v, Code):
                parts.append(f"{v.system}:{v.code}" if v.system != "HPO" else v.code)
            elif isinstance(v, (list, tuple)):
                parts.append(":".join(str(x) for x in v if x))
            else:
                parts.append(str(v))
        return "; ".join(parts)
    return "" if value is None else str(value)


def field_names(rows) -> list[str]:
    return sorted({name for r in rows for name in r.fields})


def rows_csv(rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    extra = field_names(rows)
    writer.writerow(list(ROW_COLUMNS) + extra)
    for r in rows:
        writer.writerow([_cell(getattr(r, c)) for c in ROW_COLUMNS] + [_cell(r.fields.get(n)) for n in extra])
    return out.getvalue().encode()


async def export(host, settings, actor, project: projects.Project, definition: dict, k: int, kind: str) -> tuple[bytes, str]:
    from plugins.research import cde, phenopackets_export
    from plugins.research.tables import ResearchExport

    result = await anonymised(host, settings, project, definition, k)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    files: list[tuple[str, bytes]] = []
    if kind == "cde":
        data, dictionary = io.StringIO(), io.StringIO()
        cde.write_cde_csv(result.rows, data)
        cde.write_data_dictionary_csv(dictionary)
        files += [("cde.csv", data.getvalue().encode()), ("cde-data-dictionary.csv", dictionary.getvalue().encode())]
    elif kind == "phenopackets":
        for row in result.rows:
            packet = phenopackets_export.phenopacket(row, created_by=f"CPMS research project {project.id}", created=now.isoformat().replace("+00:00", "Z"))
            files.append((f"phenopackets/{row.research_id}.json", json.dumps(packet, indent=2, sort_keys=True).encode()))
    else:
        files.append(("rows.csv", rows_csv(result.rows)))
    digest = hashlib.sha256()
    for name, content in files:
        digest.update(name.encode() + b"\0" + content)
    manifest = {
        "project": {"id": project.id, "title": project.title, "ethics_ref": project.ethics_ref, "erns": list(project.approved_erns)},
        "cohort": builder.describe(definition), "definition": definition, "kind": kind, "format": KINDS[kind],
        "k": k, "rows": len(result.rows), "exported_by": {"id": actor.user_id, "name": actor.name},
        "exported_at": now.isoformat(), "anonymisation": result.report.to_dict(),
        "files": [{"name": n, "sha256": hashlib.sha256(c).hexdigest(), "bytes": len(c)} for n, c in files],
        "sha256": digest.hexdigest(),
        "note": "Anonymised data under the project's approval. Do not try to re-identify anyone; do not join with other projects' exports.",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True, default=str))
        for name, content in files:
            z.writestr(name, content)
    async with ResearchExport._meta.db.transaction():
        row = (await ResearchExport.insert(ResearchExport(
            project=project.id, kind=kind, manifest=json.dumps(manifest, sort_keys=True, default=str), rows=len(result.rows),
            subjects=json.dumps(result.subjects), sha256=digest.hexdigest(), created_by=actor.user_id,
        )).returning(ResearchExport.id))[0]
        await projects.log(project.id, actor, "export", {"export": row["id"], "kind": kind, "rows": len(result.rows), "k": k,
                                                        "cohort": builder.describe(definition)})
    return buffer.getvalue(), f"cpms-research-{project.id}-{kind}-{now.strftime('%Y%m%dT%H%M%SZ')}.zip"


async def exports_with_withdrawals(project_ids: list[int]) -> list[dict]:
    """Exports of these projects, each with how many of its patients have since left the research
    data (consent withdrawn or refused, processing restricted, erased): who got what, when."""
    from core.identity.tables import User
    from plugins.research.tables import ResearchExport, ResearchProject

    if not project_ids:
        return []
    rows = await ResearchExport.select(
        ResearchExport.id, ResearchExport.project, ResearchExport.kind, ResearchExport.rows, ResearchExport.subjects,
        ResearchExport.created_by, ResearchExport.created_at, ResearchExport.sha256,
    ).where(ResearchExport.project.is_in(project_ids)).order_by(ResearchExport.id, ascending=False)
    titles = {p["id"]: p["title"] for p in await ResearchProject.select(ResearchProject.id, ResearchProject.title).where(ResearchProject.id.is_in(project_ids))}
    people = {u["id"]: u["name"] for u in await User.select(User.id, User.name).where(User.id.is_in([r["created_by"] for r in rows] or [-1]))}
    all_subjects = sorted({s for r in rows for s in json.loads(r["subjects"] or "[]")})
    still = await _still_included(all_subjects)
    out = []
    for r in rows:
        subjects = json.loads(r["subjects"] or "[]")
        out.append({**r, "title": titles.get(r["project"], ""), "by": people.get(r["created_by"], "?"),
                    "left": sum(1 for s in subjects if s not in still)})
    return out


async def _still_included(patient_ids: list[int]) -> set[int]:
    from plugins.research.tables import ResearchSubject

    out: set[int] = set()
    for start in range(0, len(patient_ids), 900):
        chunk = patient_ids[start:start + 900]
        marks = ", ".join("{}" for _ in chunk)
        rows = await ResearchSubject.raw(
            f"SELECT s.patient AS patient {query.FROM} WHERE {query.INCLUDED} AND s.patient IN ({marks})", *query.INCLUDED_ARGS, *chunk)
        out.update(r["patient"] for r in rows)
    return out
