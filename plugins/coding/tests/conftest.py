"""Fixtures of the coding plugin's tests: the small sample terminologies of ``data/``."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


async def load_samples() -> dict:
    """ICD-10 (ClaML), ORPHA (the Orphanet pack: nomenclature, ICD-10 and OMIM alignments,
    a classification), HPO (hp.obo) and OMIM (names from phenotype.hpoa)."""
    from plugins.coding.importers import hpo_obo, hpoa, icd10_claml, orphanet
    from plugins.coding.release import write_release

    releases = (
        icd10_claml.read(DATA / "icd10_claml_sample.xml"),
        orphanet.read(DATA / "orphanet_pack"),
        hpo_obo.read(DATA / "hp_sample.obo"),
        hpoa.read(DATA / "phenotype_sample.hpoa", key="OMIM"),
    )
    return {release.key: await write_release(release, imported_by="tests") for release in releases}


@pytest.fixture(autouse=True)
def fresh_search_index():
    """``clean_db`` empties the tables behind the search index's back (an import through
    ``write_release`` would tell it): every coding test starts with the index marked stale."""
    from plugins.coding import search

    search.invalidate()
    yield


@pytest.fixture
async def sample_terminology(clean_db) -> dict:
    """The sample terminologies, loaded into the emptied test database.

    Returns ``write_release``'s summary by system key: ``ICD-10`` (17 concepts: chapter VI, block
    G10-G14, G10-G13 with G11.1/G11.2...), ``ORPHA`` (9: 95 Friedreich ataxia, synonym FRDA and
    "Ataxie de Friedreich", mapped E to ICD-10 G11.1 and OMIM 229300; 98756 Spinocerebellar ataxia
    type 2, NTBT to G11.2 and E to OMIM 183090; groups 98006 and 183518; 999001 inactive),
    ``HPO`` (27 terms around HP:0001250 Seizure and HP:0001251 Ataxia) and ``OMIM`` (3 names)."""
    return await load_samples()
