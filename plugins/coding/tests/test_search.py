"""Search: codes in any usual spelling, words in any order and accents, ranking, misspellings,
filters, and freshness when another process imports."""

from __future__ import annotations

import asyncio
import time

import pytest

from plugins.coding import search
from plugins.coding.normalize import code_key, code_query, compact, fold, words
from plugins.coding.release import ConceptIn, make_release, write_release


@pytest.fixture
async def terms(sample_terminology):
    """The shared samples plus a small invented system for accents and ranking."""
    release = make_release(
        "XTEST", "1", "tests",
        concepts=[
            ConceptIn("S1", "Sjögren syndrome", synonyms=[("Sicca syndrome", "synonym")]),
            ConceptIn("S2", "Sjogren-Larsson syndrome"),
            ConceptIn("C1", "Catalepsy"),
            ConceptIn("C2", "Cat eye syndrome"),
            ConceptIn("Æ1", "Ærøskøbing straße fever"),
            ConceptIn("X10", "Lorem trouble"),
            ConceptIn("X101", "Ipsum trouble"),
            ConceptIn("W1", "Trouble named after X10"),
            ConceptIn("W2", "Dolor", synonyms=[("X10 dolor", "synonym")]),
            ConceptIn("O1", "Obsolete loremish", active=False),
        ],
    )
    await write_release(release)
    search.invalidate()
    await search.ensure_index()
    return sample_terminology


def codes(hits) -> list[tuple[str, str]]:
    return [(h.system, h.code) for h in hits]


# --- normalising --------------------------------------------------------------------------------


def test_folding_ignores_case_accents_and_special_letters():
    assert fold("Sjögren") == fold("SJOGREN") == "sjogren"
    assert fold("Straße") == "strasse" and fold("Ærø") == "aero" and fold("Łódź") == "lodz"
    assert words("Alzheimer's disease, type 2") == ["alzheimers", "disease", "type", "2"]
    assert words("β-thalassemia") == ["beta", "thalassemia"]
    assert compact("G11.1") == "g111" and compact("2345-7") == "23457"


def test_codes_are_recognised_with_or_without_their_prefix_and_punctuation():
    assert code_query("ORPHA:95") == code_query("orpha95") == code_query("ORPHA 95") == ("ORPHA", "95")
    assert code_query("HP:0001250") == code_query("hp_0001250") == ("HPO", "0001250")
    assert code_query("MIM #229300") == ("OMIM", "229300")
    assert code_query("G11.1") == (None, "g111")
    assert code_query("friedreich ataxia") is None and code_query("a b c") is None
    assert code_key("HPO", "HP:0001250") == "0001250" and code_key("ICD-10", "G11.1") == "g111"


# --- codes --------------------------------------------------------------------------------------


async def test_an_exact_code_in_any_usual_spelling_comes_first(terms):
    for q in ("ORPHA:95", "orpha95", "ORPHA 95", "95"):
        hits = await search.search(q)
        assert codes(hits)[0] == ("ORPHA", "95") and hits[0].match == "code", q
        assert hits[0].display == "Friedreich ataxia" and hits[0].matched == "95"
    for q in ("HP:0001250", "hp_0001250", "0001250"):
        assert codes(await search.search(q))[0] == ("HPO", "HP:0001250"), q
    for q in ("G11.1", "g111", "G111"):
        hits = await search.search(q, "ICD-10")  # one system may be given as a string
        assert codes(hits) == [("ICD-10", "G11.1")] and hits[0].kind == "category", q
    # a system named by its prefix is the only one searched for the code
    assert all(h.system == "ORPHA" for h in await search.search("ORPHA:95") if h.match.startswith("code"))


async def test_a_code_prefix_lists_shorter_codes_first_after_the_exact_code(terms):
    hits = await search.search("G11", ["ICD-10"])
    assert [h.code for h in hits][:3] == ["G11", "G11.0", "G11.1"]
    assert [h.match for h in hits][:2] == ["code", "code-prefix"]
    assert [h.code for h in hits] == sorted((h.code for h in hits), key=lambda c: (len(c), c))


async def test_loinc_codes_with_their_check_digit(terms):
    from pathlib import Path

    from plugins.coding.importers import loinc

    await write_release(loinc.read(Path(__file__).parent / "data" / "Loinc_sample.csv"))
    for q in ("X1001-1", "x10011"):
        assert codes(await search.search(q, ["LOINC"]))[0] == ("LOINC", "X1001-1"), q


# --- ranking --------------------------------------------------------------------------------------


async def test_ranking_exact_code_then_prefix_then_preferred_then_synonym(terms):
    hits = await search.search("X10", ["XTEST"])
    assert [(h.code, h.match) for h in hits] == [
        ("X10", "code"), ("X101", "code-prefix"), ("W1", "preferred"), ("W2", "synonym"),
    ]
    assert hits[3].matched == "X10 dolor" and hits[3].display == "Dolor"


async def test_whole_words_before_prefixes_then_shorter_terms_first(terms):
    # "Cat eye syndrome" holds the whole word "cat": before the shorter "Catalepsy"
    assert [h.code for h in await search.search("cat", ["XTEST"])] == ["C2", "C1"]
    hits = await search.search("abnormal", ["HPO"], limit=50)
    groups = [
        "preferred, whole word" if h.match == "preferred" and "abnormal" in h.matched.lower().split() else
        "preferred, prefix" if h.match == "preferred" else h.match
        for h in hits
    ]
    assert groups == sorted(groups, key=["preferred, whole word", "preferred, prefix", "synonym"].index)
    assert set(groups) == {"preferred, whole word", "preferred, prefix", "synonym"}
    whole = [h.matched for h, g in zip(hits, groups) if g == "preferred, whole word"]
    assert whole[0] == "Abnormal muscle tone" and whole == sorted(whole, key=len)
    assert ("HP:0001288", "Abnormal gait") in [(h.code, h.matched) for h in hits if h.match == "synonym"]


async def test_one_hit_per_concept_with_its_best_term(terms):
    hits = await search.search("ataxia")
    assert len(codes(hits)) == len(set(codes(hits)))
    ataxia = next(h for h in hits if h.code == "HP:0001251")
    assert ataxia.matched == "Ataxia" and ataxia.match == "preferred"  # not its synonym "Cerebellar ataxia"
    # found by a synonym only: the synonym is reported, the label is the display
    hits = await search.search("sicca", ["XTEST"])
    assert [(h.code, h.display, h.matched, h.match) for h in hits] == [("S1", "Sjögren syndrome", "Sicca syndrome", "synonym")]


# --- words ------------------------------------------------------------------------------------------


async def test_words_in_any_order_and_as_prefixes(terms):
    for q in ("friedreich ataxia", "ataxia friedreich", "atax fried", "FRIED   ATAX"):
        hits = await search.search(q, ["ORPHA"])
        assert codes(hits)[0] == ("ORPHA", "95") and hits[0].match == "preferred", q
    hits = await search.search("fried atax")
    assert {("ORPHA", "95"), ("OMIM", "229300")} <= set(codes(hits))
    # every word must match: "friedreich type" matches nothing
    assert await search.search("friedreich spinocerebellar", ["ORPHA"]) == []


async def test_accents_are_ignored_both_ways(terms):
    hits = await search.search("ataxie friedreich")
    assert codes(hits)[0] == ("ORPHA", "95")
    assert hits[0].match == "synonym" and hits[0].matched == "Ataxie de Friedreich"
    for q in ("Sjogren", "sjögren", "SJÖGREN syndr"):
        found = codes(await search.search(q, ["XTEST"]))
        assert found[:2] == [("XTEST", "S1"), ("XTEST", "S2")], q
    assert codes(await search.search("aeroskobing strasse", ["XTEST"])) == [("XTEST", "Æ1")]


async def test_misspelt_words_are_found_last_as_fuzzy(terms):
    hits = await search.search("frederich ataxia")
    assert hits and codes(hits)[0] == ("ORPHA", "95") and {h.match for h in hits} == {"fuzzy"}
    assert ("OMIM", "229300") in codes(hits)
    hits = await search.search("ataxai", ["HPO"])  # swapped letters
    assert codes(hits)[0] == ("HPO", "HP:0001251") and hits[0].match == "fuzzy"
    assert codes(await search.search("seizrue", ["HPO"]))[0] == ("HPO", "HP:0001250")
    # short words are not guessed at, nor numbers
    assert await search.search("atx", ["HPO"]) == []
    assert await search.search("type 9", ["ORPHA"]) == []
    # a code match still comes before the guesses
    await write_release(make_release("XFUZ", "1", "tests", concepts=[ConceptIn("ATAXAI", "Code spelt like a typo")]))
    hits = await search.search("ataxai", ["HPO", "XFUZ"])
    assert (hits[0].code, hits[0].match) == ("ATAXAI", "code") and hits[1].match == "fuzzy"


# --- filters and limits -----------------------------------------------------------------------------


async def test_only_the_chosen_systems_are_searched(terms):
    assert {h.system for h in await search.search("ataxia", ["OMIM"])} == {"OMIM"}
    assert {h.system for h in await search.search("ataxia", ["ORPHA", "HPO"], limit=50)} == {"ORPHA", "HPO"}
    assert {h.system for h in await search.search("ataxia", limit=100)} >= {"ORPHA", "HPO", "OMIM", "ICD-10"}
    assert await search.search("ataxia", ["MedDRA"]) == []  # not loaded: nothing, no error


async def test_inactive_concepts_only_when_asked(terms):
    assert await search.search("invented ataxia entity") == []
    assert await search.search("999001") == []
    hits = await search.search("invented ataxia entity", include_inactive=True)
    assert codes(hits) == [("ORPHA", "999001")] and hits[0].active is False
    assert codes(await search.search("999001", include_inactive=True)) == [("ORPHA", "999001")]
    assert all(h.active for h in await search.search("ataxia", limit=100))


async def test_limit_empty_and_long_queries(terms):
    assert len(await search.search("ataxia", limit=3)) == 3
    assert len(await search.search("a", limit=5)) == 5
    assert await search.search("") == [] and await search.search("   \t ") == []
    assert await search.search("ataxia", limit=0) == []
    long = "friedreich " * 30  # 330 characters: cut to 200, still a search
    assert codes(await search.search(long, ["ORPHA"]))[0] == ("ORPHA", "95")
    assert await search.search("%_' OR 1=1; --") == []  # nothing here is SQL


# --- freshness -------------------------------------------------------------------------------------


async def _import_behind_the_search_back(code: str, display: str) -> None:
    """Rows written as another process would: no invalidate() in this one."""
    from plugins.coding.tables import CodeSystem, Concept, Designation

    system = CodeSystem(key="XOTHER", name="Other process", uri="urn:test:other", concepts=1)
    await system.save()
    concept = Concept(system=system.id, code=code, display=display)
    await concept.save()
    await Designation(concept=concept.id, term=display, use="preferred").save()


async def test_an_import_by_another_process_shows_within_a_second(terms):
    await search.search("ataxia")  # index loaded and the store just checked
    await _import_behind_the_search_back("Q1", "Quuxotic wobbliness")
    assert await search.search("quuxotic") == []  # checked less than a second ago
    await asyncio.sleep(search.CHECK_EVERY + 0.1)
    assert codes(await search.search("quuxotic")) == [("XOTHER", "Q1")]


async def test_invalidate_forces_a_reload(terms):
    await search.search("ataxia")
    await _import_behind_the_search_back("Q2", "Zymotic flutter")
    search.invalidate()
    assert codes(await search.search("zymotic flutter")) == [("XOTHER", "Q2")]


async def test_replacing_a_system_is_seen(terms):
    assert codes(await search.search("catalepsy", ["XTEST"])) == [("XTEST", "C1")]
    await write_release(make_release("XTEST", "2", "tests", concepts=[ConceptIn("N1", "Narcolepsy")]), replace=True)
    assert await search.search("catalepsy", ["XTEST"]) == []
    assert codes(await search.search("narcolepsy", ["XTEST"])) == [("XTEST", "N1")]


async def test_concurrent_first_searches_build_once(terms, monkeypatch):
    built = []
    real = search.build_index

    def counting(*args):
        built.append(1)
        return real(*args)

    monkeypatch.setattr(search, "build_index", counting)
    search.invalidate()
    results = await asyncio.gather(*[search.search("ataxia", ["HPO"]) for _ in range(8)])
    assert len(built) == 1
    assert all(codes(r) == codes(results[0]) and r for r in results)


async def test_search_sync_needs_a_loaded_index(terms, monkeypatch):
    assert codes(search.search_sync("ORPHA:95"))[0] == ("ORPHA", "95")
    monkeypatch.setattr(search, "_index", None)
    with pytest.raises(RuntimeError, match="ensure_index"):
        search.search_sync("ataxia")


async def test_an_empty_store_finds_nothing(clean_db):
    search.invalidate()  # the rows of earlier tests were deleted behind the index's back
    assert await search.search("ataxia") == [] and await search.search("ORPHA:95") == []
    assert search.index_stats()["concepts"] == 0


async def test_index_is_built_from_the_tables_in_seconds(terms):
    search.invalidate()
    started = time.perf_counter()
    await search.ensure_index()
    stats = search.index_stats()
    assert time.perf_counter() - started < 10
    assert stats["concepts"] >= 60 and stats["terms"] > stats["concepts"] and stats["words"] > 100
