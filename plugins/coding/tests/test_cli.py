"""``cpms coding ...`` run as a real command (a subprocess) against the test database."""

from __future__ import annotations

import shutil

from plugins.coding.tables import CodeSystem, Concept, Mapping
from plugins.coding.tests.conftest import DATA
from tests.support.cli import run_cpms



def cpms(settings, *args):
    return run_cpms(settings, "coding", *args, timeout=180)


async def test_import_refuse_replace_and_list(clean_db, settings):
    out = cpms(settings, "import", "icd10-claml", str(DATA / "icd10_claml_sample.xml"))
    assert out.returncode == 0, out.stderr
    assert "Loaded ICD-10 2019: 17 concepts, 23 terms, 16 hierarchy links, 0 mappings" in out.stdout
    assert await Concept.count() == 17

    again = cpms(settings, "import", "icd10-claml", str(DATA / "icd10_claml_sample.xml"))
    assert again.returncode == 1
    assert "Error: ICD-10 is already loaded (version 2019" in again.stderr and "--replace" in again.stderr
    assert "Traceback" not in again.stderr

    replaced = cpms(settings, "import", "icd10-claml", str(DATA / "icd10_claml_sample.xml"), "--replace", "--version", "2019-cli")
    assert replaced.returncode == 0, replaced.stderr
    assert "Loaded ICD-10 2019-cli" in replaced.stdout and "(replaced version 2019)" in replaced.stdout
    row = await CodeSystem.select(CodeSystem.version, CodeSystem.imported_by).where(CodeSystem.key == "ICD-10").first()
    assert row["version"] == "2019-cli" and row["imported_by"].startswith("cli")

    listing = cpms(settings, "list")
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if line.startswith("ICD-10 "))
    assert "2019-cli" in line and "17 concepts" in line and "icd10_claml_sample.xml" in line


async def test_a_malformed_release_exits_1_and_writes_nothing(clean_db, settings, tmp_path):
    folder = tmp_path / "MedAscii"
    shutil.copytree(DATA / "meddra_sample" / "MedAscii", folder)
    llt = folder / "llt.asc"
    llt.write_bytes(llt.read_bytes().replace(b"Zarnic head pain$", b"Zarnic$head pain$", 1))
    out = cpms(settings, "import", "meddra", str(tmp_path))
    assert out.returncode == 1
    assert "Error: llt.asc: line 2: 12 $-separated fields, expected 11" in out.stderr
    assert "Traceback" not in out.stderr
    assert await CodeSystem.count() == 0 and await Concept.count() == 0

    good = cpms(settings, "import", "meddra", str(DATA / "meddra_sample"))
    assert good.returncode == 0, good.stderr
    assert "Loaded MedDRA 27.0: 14 concepts" in good.stdout


async def test_orphanet_pack_then_an_alignment_file(clean_db, settings):
    out = cpms(settings, "import", "orphanet", str(DATA / "orphanet_pack"))
    assert out.returncode == 0, out.stderr
    assert "Loaded ORPHA 2025 (2025-06-24): 9 concepts" in out.stdout and "11 mappings" in out.stdout
    assert "1 to UMLS" in out.stdout
    mapping = cpms(settings, "import", "orphanet-mapping", str(DATA / "orphanet_product1_sample.xml"))
    assert mapping.returncode == 0, mapping.stderr
    # product1 aligns 95, 98756 and 100 to ICD-10 and two of them to OMIM: each target replaced on its own.
    assert "ORPHA → ICD-10: 3 mappings written (5 replaced)" in mapping.stdout
    assert "ORPHA → OMIM: 2 mappings written (6 replaced)" in mapping.stdout
    assert await Mapping.count() == 5
    hpoa = cpms(settings, "import", "hpo-annotations", str(DATA / "phenotype_sample.hpoa"), "--key", "OMIM")
    assert hpoa.returncode == 0 and "Loaded OMIM 2025-01-16: 3 concepts" in hpoa.stdout


async def test_load_bundled(clean_db, settings):
    refused = cpms(settings, "load-bundled", "icd10-who")
    assert refused.returncode == 1 and "World Health Organization" in refused.stderr and "--accept-who-licence" in refused.stderr
    assert "Traceback" not in refused.stderr
    out = cpms(settings, "load-bundled", "orpha-hpoa", "omim-hpoa")
    assert out.returncode == 0, out.stderr
    assert "Loaded ORPHA 2025-01-16: 4,281 concepts" in out.stdout and "Loaded OMIM 2025-01-16: 8,359 concepts" in out.stdout
    unknown = cpms(settings, "load-bundled", "snomed")
    assert unknown.returncode == 1 and "Unknown bundled terminology 'snomed'" in unknown.stderr
    assert await CodeSystem.count() == 2
