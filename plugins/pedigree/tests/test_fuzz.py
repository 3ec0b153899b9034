"""Fuzzing the pedigree's file readers (tests/support/fuzz.py): PED/PLINK text and GA4GH FHIR
bundles, random and mutated from real files. Each is read or refused with PedigreeError."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from core.jsonbody import JsonRejected, parse
from plugins.pedigree.fhir import export_bundle, import_bundle
from plugins.pedigree.model import PedigreeError
from plugins.pedigree.ped import export_ped, import_ped
from plugins.pedigree.tests.families import ALL
from tests.support.fuzz import FUZZ, bounded, mutations

PED_SEEDS = [export_ped(make())[0].encode() for make in ALL.values()] + [
    b"FAM7 1 0 0 1 2 A C 1 2\nFAM7 2 0 0 2 1 C C 2 2\nFAM7 3 1 2 1 2 A C 1 1\n",
    b"F dad 0 0 1 2\nF k1 dad 0 1 1\nF mum 0 0 2 1\nF k3 0 mum 1 0\n",
]
FHIR_SEEDS = [json.dumps(export_bundle(make())).encode() for make in list(ALL.values())[:3]]


@FUZZ
@given(st.sampled_from(PED_SEEDS).flatmap(lambda seed: mutations(seed, max_edits=6)) | st.text(max_size=2000).map(str.encode))
def test_ped_files_are_read_or_refused(raw):
    with bounded("import_ped"):
        try:
            families = import_ped(raw.decode("utf-8", "replace"), notes=[])
        except PedigreeError as exc:
            assert exc.problems and all(isinstance(p, str) for p in exc.problems)
            return
    for ped in families:  # what was read can be written back (or refused, e.g. an id PED cannot hold)
        try:
            text, _ = export_ped(ped)
        except PedigreeError:
            continue
        assert text.count("\n") >= len(ped.individuals)


@FUZZ
@given(st.sampled_from(FHIR_SEEDS).flatmap(lambda seed: mutations(seed, max_edits=6)))
def test_fhir_pedigree_bundles_are_read_or_refused(raw):
    with bounded("import_bundle"):
        try:
            data = parse(raw, max_depth=64)
        except JsonRejected:
            return
        try:
            import_bundle(data)
        except PedigreeError as exc:
            assert exc.problems
