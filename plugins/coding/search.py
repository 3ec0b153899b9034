"""Search over the loaded terminologies: an in-memory index per process, rebuilt when the store changes.

Why in memory: searching must be the same on SQLite and PostgreSQL, piccolo has no portable
full-text index, and ``LIKE '%…%'`` reads every term. The index is built from the tables
(:mod:`plugins.coding.tables`) in a worker thread, in a few seconds for ~200,000 terms, and
queried in well under a millisecond typically (``benchmarks/coding_bench.py``).

What a query finds, best first (one hit per concept, its best-matching term in ``matched``):

1. ``code``: the code itself ("G11.1", "g111", "ORPHA:95", "HP_0001250", "2345-7");
2. ``code-prefix``: codes starting with it (shorter codes first), when it contains a digit;
3. ``preferred``: preferred terms holding every query word as the start of one of their words,
   in any order, accents and case ignored ("ataxie friedreich", "sjogren");
4. ``synonym``: the same over synonyms, inclusion terms and abbreviations;
5. ``fuzzy``: when a query word starts no word at all, the words within one edit of it
   (two for words of 8 letters or more; an edit is an insertion, deletion, substitution or a
   swap of neighbours), "frederich ataxia" -> Friedreich ataxia.

Within 3 and 4, terms holding every query word as a whole word come first, then shorter terms
(as Snowstorm ranks by the shortest matching term). Inactive concepts are left out unless asked.

How: terms are numbered in rank order (preferred before synonyms, then shorter first), so that
each word's posting list (the terms holding it) is in rank order too. A query word is a range
of the sorted vocabulary; the rarest query word gives the candidates, merged lazily in rank
order, and each candidate is checked against the other words by bisecting its own sorted word
list; the search stops after ``limit`` hits. When the words seldom go together, the search
switches to intersecting posting sets; a one- or two-letter prefix walks the terms in rank
order instead (see :func:`_part_terms`). Posting lists are kept per (system, active)
partition, so a search restricted to a small system never walks a large system's terms.
Misspellings go through a symmetric-deletion index over the vocabulary (packed in one sorted
array of integers, not a dictionary of strings). See :class:`_Index`.

Freshness: :func:`search` compares, at most once a second, a signature of ``coding_system``
(ids, keys, import times, sizes), so an import by another process shows within a second;
:func:`invalidate` (called after every write in this process) forces the next search to rebuild.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import time
import weakref
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from plugins.coding.normalize import WORD, code_key, code_query, fold

#: Longer queries are cut: nobody types more, and work stays bounded.
MAX_QUERY = 200
#: Seconds between two checks of the store's signature in one process.
CHECK_EVERY = 1.0
#: Rows read per query while loading the index.
READ_CHUNK = 50_000
#: Query words that would need more than this many vocabulary words merged, on a large posting
#: count, are answered by walking the partition's terms in rank order instead (short prefixes).
WIDE_RANGE = 256
#: ... when at least one term of the partition in this many holds the word.
DENSE = 16
#: Misspellings are looked up by their first characters only (as SymSpell's prefix length):
#: the deletion index stays small, and the whole word is compared afterwards.
FUZZY_PREFIX = 8
#: After this many candidates of the rarest word without the other words, the rest of the
#: search intersects posting sets instead (words that seldom go together).
VERIFY_MAX = 400
#: ... a word's postings are intersected while they number under this many times the
#: candidates left; past that, each candidate is checked for the word instead.
SET_FACTOR = 16

PREFERRED, SYNONYM = 0, 1
_MAX_CHAR = "\U0010ffff"


@dataclass(frozen=True)
class Hit:
    system: str
    code: str
    display: str
    #: The term (or the code) that matched the query.
    matched: str
    #: "code" | "code-prefix" | "preferred" | "synonym" | "fuzzy"
    match: str
    kind: str
    active: bool


# --- the index ------------------------------------------------------------------------------


class _Part:
    """Posting lists of one (system, active) partition, in CSR form over the global vocabulary:
    the terms holding word ``w`` are ``post[off[w]:off[w + 1]]`` (term numbers, ascending),
    so ``off[hi] - off[lo]`` counts the postings of a vocabulary range."""

    __slots__ = ("system", "active", "off", "post", "view", "terms")

    def __init__(self, system: int, active: bool, off: array, post: array, terms: array) -> None:
        self.system, self.active = system, active
        self.off, self.post, self.terms = off, post, terms
        self.view = memoryview(post)


class _Texts:
    """Many strings kept as one UTF-8 buffer and offsets: a few bytes each instead of a string
    object (~50 bytes plus the text); one is decoded only when a hit shows it."""

    __slots__ = ("buffer", "offsets")

    def __init__(self, strings: Iterable[str] = ()) -> None:
        self.buffer = bytearray()
        self.offsets = array("Q", [0])
        for text in strings:
            self.buffer += text.encode()
            self.offsets.append(len(self.buffer))

    def __getitem__(self, i: int) -> str:
        return self.buffer[self.offsets[i] : self.offsets[i + 1]].decode()

    def __len__(self) -> int:
        return len(self.offsets) - 1


class _Index:
    """Everything a search reads, immutable once built (searches in threads need no lock).

    Concepts and terms are parallel arrays indexed by number, not objects per term; their
    texts are :class:`_Texts`."""

    def __init__(self) -> None:
        self.signature: tuple = ()
        self.generation = 0
        self.system_keys: list[str] = []
        self.system_index: dict[str, int] = {}
        # concepts
        self.c_system = array("H")
        self.c_code = _Texts()
        self.c_display = _Texts()
        self.c_kind = array("H")  # into kinds
        self.kinds: list[str] = []
        self.c_active = bytearray()
        # terms, in rank order; term t's sorted word numbers are t_words[t_woff[t]:t_woff[t + 1]];
        # its text is t_texts[t_text[t]], or its concept's display when t_text[t] is -1
        self.t_concept = array("I")
        self.t_text = array("i")
        self.t_texts = _Texts()
        self.t_woff = array("I")
        self.t_words = array("I")
        self.n_preferred = 0
        # vocabulary (sorted) and partitions
        self.vocab: list[str] = []
        self.word_id: dict[str, int] = {}
        self.parts: dict[tuple[int, bool], _Part] = {}
        # codes: per system, per compacted length, sorted keys and their concepts
        self.codes: list[dict[int, tuple[list[str], array]]] = []
        # misspellings: sorted (hash(variant) << shift | word number)
        self.deletes = array("q")
        self.shift = 20
        self.stats: dict = {}

    # -- sizes for the benchmark and the admin page
    @property
    def concepts(self) -> int:
        return len(self.c_system)

    @property
    def terms(self) -> int:
        return len(self.t_concept)

    def term_text(self, t: int) -> str:
        i = self.t_text[t]
        return self.c_display[self.t_concept[t]] if i < 0 else self.t_texts[i]


def _deletes(word: str, depth: int) -> set[str]:
    """``word`` and every string made from it by deleting up to ``depth`` characters."""
    if depth == 0:
        return {word}
    ones = {word[:i] + word[i + 1:] for i in range(len(word))}
    if depth == 1:
        ones.add(word)
        return ones
    out = {w[:i] + w[i + 1:] for w in ones for i in range(len(w))}
    out |= ones
    out.add(word)
    return out


def _vocab_depth(length: int) -> int:
    """Deletions indexed for a vocabulary word of ``length``: enough for the query-side limits
    (1 edit from 4 letters, 2 from 8), see :func:`_query_distance`."""
    if length >= 8:
        return 2
    if length >= 4:
        return 1
    return 0 if length >= 3 else -1


def _query_distance(length: int) -> int:
    return 2 if length >= 8 else 1 if length >= 4 else 0


def osa_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (Levenshtein plus swaps of neighbours), or ``limit + 1``
    as soon as it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        ai = a[i - 1]
        for j in range(1, len(b) + 1):
            cost = 0 if ai == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ai == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def build_index(systems: Sequence[tuple], concepts: Iterable[tuple], designations: Iterable[tuple], signature: tuple = ()) -> _Index:
    """Build the index from rows: systems ``(id, key)``, concepts ``(id, system_id, code,
    display, kind, active)``, designations ``(concept_id, term, use)`` (``use`` may already be
    :data:`PREFERRED` or :data:`SYNONYM`). Pure CPU work: run it in a thread."""
    # The build makes millions of containers that all live on: the cyclic collector would
    # walk them again and again for nothing (a third of the time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _build(systems, concepts, designations, signature)
    finally:
        if collecting:
            gc.enable()


def _build(systems: Sequence[tuple], concepts: Iterable[tuple], designations: Iterable[tuple], signature: tuple) -> _Index:
    started = time.perf_counter()
    idx = _Index()
    idx.signature = signature
    by_key = sorted(systems, key=lambda s: s[1])
    idx.system_keys = [key for _, key in by_key]
    idx.system_index = {key: i for i, key in enumerate(idx.system_keys)}
    sys_of_id = {sid: i for i, (sid, _) in enumerate(by_key)}

    concept_of_id: dict[int, int] = {}
    kind_of: dict[str, int] = {}
    codes: list[str] = []
    displays: list[str] = []
    c_system, c_kind, c_active = idx.c_system, idx.c_kind, idx.c_active
    for cid, sid, code, display, kind, active in concepts:
        s = sys_of_id.get(sid)
        if s is None:
            continue
        concept_of_id[cid] = len(codes)
        c_system.append(s)
        codes.append(code)
        displays.append(display)
        c_kind.append(kind_of.setdefault(kind or "", len(kind_of)))
        c_active.append(1 if active else 0)
    idx.kinds = list(kind_of)
    n_concepts = len(codes)

    # Terms as (group, folded length, folded, concept, text or None for the display, words):
    # sorted, this is rank order.
    rows: list[tuple] = []
    has_preferred = bytearray(n_concepts)
    words_seen: dict[str, str] = {}
    intern = words_seen.setdefault
    findall = WORD.findall
    for concept_id, term, use in designations:
        c = concept_of_id.get(concept_id)
        if c is None or not term:
            continue
        group = PREFERRED if use == PREFERRED or use == "preferred" else SYNONYM
        if group == PREFERRED:
            has_preferred[c] = 1
        folded = fold(term)
        found = findall(folded)
        if found:
            rows.append((group, len(folded), folded, c, None if term == displays[c] else term, list(map(intern, found, found))))
    for c in range(n_concepts):
        if not has_preferred[c] and displays[c]:
            folded = fold(displays[c])
            found = findall(folded)
            if found:
                rows.append((PREFERRED, len(folded), folded, c, None, list(map(intern, found, found))))
    del has_preferred
    rows.sort()  # (group, length, folded, concept) decides; the text and words are never compared
    # The same folded text twice for one concept ("Sjögren"/"Sjogren" synonyms) in one group is
    # adjacent now: keep the first.
    rows = [r for i, r in enumerate(rows) if i == 0 or r[:4] != rows[i - 1][:4]]
    idx.n_preferred = bisect_left(rows, (SYNONYM,))

    vocab = sorted(words_seen)
    del words_seen
    word_id = {w: i for i, w in enumerate(vocab)}
    idx.vocab, idx.word_id = vocab, word_id
    n_vocab = len(vocab)

    part_keys = sorted({(c_system[c], bool(c_active[c])) for c in range(n_concepts)})
    part_of = {k: i for i, k in enumerate(part_keys)}
    concept_part = array("H", (part_of[(c_system[c], bool(c_active[c]))] for c in range(n_concepts)))
    lists = [[[] for _ in range(n_vocab)] for _ in part_keys]
    part_terms: list[list[int]] = [[] for _ in part_keys]
    t_concept, t_text, t_woff, t_words = idx.t_concept, idx.t_text, idx.t_woff, idx.t_words
    texts: list[str] = []
    t_woff.append(0)
    lookup = word_id.__getitem__
    for tid, row in enumerate(rows):
        c = row[3]
        wids = sorted(set(map(lookup, row[5])))
        t_concept.append(c)
        if row[4] is None:
            t_text.append(-1)
        else:
            t_text.append(len(texts))
            texts.append(row[4])
        t_words.extend(wids)
        t_woff.append(len(t_words))
        p = concept_part[c]
        part_terms[p].append(tid)
        mine = lists[p]
        for w in wids:
            mine[w].append(tid)
    n_terms = len(rows)
    del rows
    for p, key in enumerate(part_keys):
        mine = lists[p]
        off, post = array("I", [0]), array("I")
        for lst in mine:
            if lst:
                post.extend(lst)
            off.append(len(post))
        lists[p] = None
        idx.parts[key] = _Part(key[0], key[1], off, post, array("I", part_terms[p]))
    del lists, part_terms

    # Codes, compacted, grouped by length so that shorter codes come first in a prefix search.
    per_system: list[list[tuple[str, int]]] = [[] for _ in idx.system_keys]
    for c in range(n_concepts):
        s = c_system[c]
        per_system[s].append((code_key(idx.system_keys[s], codes[c]), c))
    for entries in per_system:
        entries.sort()
        by_len: dict[int, tuple[list[str], array]] = {}
        for k, c in entries:
            keys, cs = by_len.setdefault(len(k), ([], array("I")))
            keys.append(k)
            cs.append(c)
        idx.codes.append(by_len)
    del per_system
    idx.c_code, idx.c_display, idx.t_texts = _Texts(codes), _Texts(displays), _Texts(texts)
    del codes, displays, texts
    built = time.perf_counter()

    # Misspellings: every vocabulary word's deletion variants, hashed and packed in one array.
    shift = max(20, n_vocab.bit_length())
    mask = (1 << (62 - shift)) - 1
    packed: list[int] = []
    extend = packed.extend
    for wid, w in enumerate(vocab):
        depth = _vocab_depth(len(w))
        if depth >= 0 and not w.isdecimal():
            extend([((h & mask) << shift) | wid for h in map(hash, _deletes(w[:FUZZY_PREFIX], depth))])
    packed.sort()
    idx.deletes, idx.shift = array("q", packed), shift
    idx.stats = {
        "concepts": n_concepts, "terms": n_terms, "words": n_vocab, "postings": len(t_words),
        "deletion_variants": len(packed), "seconds_index": round(built - started, 3),
        "seconds_fuzzy": round(time.perf_counter() - built, 3),
    }
    return idx


# --- searching ------------------------------------------------------------------------------

_Ranges = list[tuple[int, int]]  # word-number ranges [lo, hi): a term matches if it holds one


def _prefix_range(vocab: list[str], word: str) -> tuple[int, int]:
    lo = bisect_left(vocab, word)
    return lo, bisect_left(vocab, word + _MAX_CHAR, lo)


def _fuzzy_words(idx: _Index, word: str) -> list[int]:
    """Vocabulary words within the allowed edit distance of ``word`` (closest first)."""
    distance = _query_distance(len(word))
    if distance == 0 or not idx.deletes or any(ch.isdecimal() for ch in word):
        return []  # digits are numbers or codes: "type 2" is not "type 3"
    shift, mask = idx.shift, (1 << (62 - idx.shift)) - 1
    wid_mask = (1 << shift) - 1
    packed = idx.deletes
    candidates: set[int] = set()
    for variant in _deletes(word[:FUZZY_PREFIX], distance):
        h = (hash(variant) & mask) << shift
        i = bisect_left(packed, h)
        end = h | wid_mask
        while i < len(packed) and packed[i] <= end:
            candidates.add(packed[i] & wid_mask)
            i += 1
    scored = []
    for wid in candidates:
        d = osa_distance(word, idx.vocab[wid], distance)
        if d <= distance:
            scored.append((d, wid))
    return [wid for _, wid in sorted(scored)]


def _count(part: _Part, ranges: _Ranges) -> int:
    off = part.off
    return sum(off[hi] - off[lo] for lo, hi in ranges)


def _postings(part: _Part, ranges: _Ranges, t_lo: int, t_hi: int) -> list:
    """The posting lists of the words in ``ranges``, cut to terms ``[t_lo, t_hi)`` (views)."""
    off, post, view = part.off, part.post, part.view
    lists = []
    for lo, hi in ranges:
        for w in range(lo, hi):
            a, b = off[w], off[w + 1]
            if a == b:
                continue
            if t_lo > 0:
                a = bisect_left(post, t_lo, a, b)
            if post[b - 1] >= t_hi:
                b = bisect_left(post, t_hi, a, b)
            if a < b:
                lists.append(view[a:b])
    return lists


def _ascending(lists: list) -> Iterator[int]:
    """The union of ascending lists, ascending, without repeats."""
    if len(lists) == 1:
        yield from lists[0]
        return
    last = -1
    for t in heapq.merge(*lists):
        if t != last:
            yield t
            last = t


def _holds(t_words: array, start: int, end: int, rest: list[_Ranges]) -> bool:
    """Whether the term whose words are ``t_words[start:end]`` holds a word of each of ``rest``."""
    for ranges in rest:
        for lo, hi in ranges:
            i = bisect_left(t_words, lo, start, end)
            if i < end and t_words[i] < hi:
                break
        else:
            return False
    return True


def _intersection(part: _Part, words: list[_Ranges], counts: list[int], t_lo: int, t_hi: int) -> tuple[list[int], list[_Ranges]]:
    """Terms in ``[t_lo, t_hi)`` holding every word, ascending, by intersecting posting sets (C
    speed), rarest word first (``words`` come in that order, with their posting ``counts``).
    Once few candidates are left, checking each of them costs less than another set: the words
    not intersected are returned for the caller to check."""
    found: set[int] | None = None
    unchecked = []
    for ranges, count in zip(words, counts):
        if found is not None and (count > SET_FACTOR * len(found) or sum(hi - lo for lo, hi in ranges) > WIDE_RANGE):
            unchecked.append(ranges)
            continue
        lists = _postings(part, ranges, t_lo, t_hi)
        if found is None:
            found = set()
            for lst in lists:
                found.update(lst)
        else:
            found = set().union(*(found.intersection(lst) for lst in lists))
        if not found:
            return [], []
    return sorted(found or ()), unchecked


def _part_terms(idx: _Index, part: _Part, words: list[_Ranges], t_lo: int, t_hi: int, need: int, seen: set[int]) -> list[int]:
    """The first ``need`` terms of ``part`` in ``[t_lo, t_hi)`` that hold every query word, at most
    one per concept and none of ``seen``'s, ascending.

    The rarest word's posting lists are merged lazily and each term checked for the other words,
    which stops early when the words go together. If, after :data:`VERIFY_MAX` candidates, they
    do not, the rest is found by intersecting posting sets. A short prefix with a wide vocabulary
    range and frequent terms is met sooner by walking the partition's terms in rank order."""
    t_concept, t_woff, t_words = idx.t_concept, idx.t_woff, idx.t_words
    counts = [_count(part, r) for r in words]
    order = sorted(range(len(words)), key=counts.__getitem__)
    driver = order[0]
    if counts[driver] == 0:
        return []
    rest = [words[i] for i in order[1:]]
    stream: Iterable[int]
    switch = bool(rest)
    if sum(hi - lo for lo, hi in words[driver]) > WIDE_RANGE:
        terms = part.terms
        a = bisect_left(terms, t_lo)
        b = bisect_left(terms, t_hi, a)
        if counts[driver] * DENSE >= b - a:
            stream, rest, switch = memoryview(terms)[a:b], words, False
        else:
            stream = _ascending(_postings(part, words[driver], t_lo, t_hi))
    else:
        stream = _ascending(_postings(part, words[driver], t_lo, t_hi))
    found: list[int] = []
    mine: set[int] = set()
    examined = 0
    for t in stream:
        c = t_concept[t]
        if c in seen or c in mine:
            continue
        if rest and not _holds(t_words, t_woff[t], t_woff[t + 1], rest):
            examined += 1
            if switch and examined >= VERIFY_MAX:
                # The words seldom go together: intersect the sets of the terms still ahead.
                ahead, unchecked = _intersection(part, [words[i] for i in order], [counts[i] for i in order], t + 1, t_hi)
                for t2 in ahead:
                    c = t_concept[t2]
                    if c in seen or c in mine or (unchecked and not _holds(t_words, t_woff[t2], t_woff[t2 + 1], unchecked)):
                        continue
                    mine.add(c)
                    found.append(t2)
                    if len(found) >= need:
                        break
                return found
            continue
        mine.add(c)
        found.append(t)
        if len(found) >= need:
            break
    return found


def _collect(idx: _Index, parts: list[_Part], words: list[_Ranges], t_lo: int, t_hi: int, need: int, seen: set[int]) -> list[int]:
    """The first ``need`` terms (ascending) of new concepts matching every query word, over the
    partitions; at most one term per concept (its best). Concepts differ between partitions, so
    each partition's own first ``need`` suffice."""
    found: list[int] = []
    for part in parts:
        found.extend(_part_terms(idx, part, words, t_lo, t_hi, need, seen))
    found.sort()
    return found[:need]


def _code_hits(idx: _Index, query: str, systems: list[int], need: int, include_inactive: bool, seen: set[int]) -> list[Hit]:
    parsed = code_query(query)
    if parsed is None:
        return []
    named, key = parsed
    if named is not None:
        systems = [s for s in systems if idx.system_keys[s] == named]
    hits: list[Hit] = []

    def take(c: int, match: str) -> None:
        if c in seen or (not include_inactive and not idx.c_active[c]):
            return
        seen.add(c)
        hits.append(_hit(idx, c, idx.c_code[c], match))

    for s in systems:  # exact, in the order the systems were asked for
        keys, cs = idx.codes[s].get(len(key), ((), ()))
        i = bisect_left(keys, key)
        while i < len(keys) and keys[i] == key and len(hits) < need:
            take(cs[i], "code")
            i += 1
    if len(hits) >= need or not any(ch.isdecimal() for ch in key):
        return hits
    lengths = sorted({n for s in systems for n in idx.codes[s] if n > len(key)})
    upper = key + _MAX_CHAR
    for n in lengths:
        found = []
        for order, s in enumerate(systems):
            keys, cs = idx.codes[s].get(n, ((), ()))
            i = bisect_left(keys, key)
            end = bisect_left(keys, upper, i)
            for j in range(i, min(end, i + need * 4)):  # a few extra for inactive ones
                found.append((keys[j], order, cs[j]))
        for _, _, c in sorted(found):
            take(c, "code-prefix")
            if len(hits) >= need:
                return hits
    return hits


def _hit(idx: _Index, c: int, matched: str, match: str) -> Hit:
    return Hit(
        system=idx.system_keys[idx.c_system[c]], code=idx.c_code[c], display=idx.c_display[c],
        matched=matched, match=match, kind=idx.kinds[idx.c_kind[c]], active=bool(idx.c_active[c]),
    )


def _search(idx: _Index, query: str, systems: Sequence[str] | None, limit: int, include_inactive: bool) -> list[Hit]:
    query = (query or "")[:MAX_QUERY].strip()
    if not query or limit <= 0:
        return []
    if isinstance(systems, str):
        systems = [systems]
    if systems:
        chosen = list(dict.fromkeys(idx.system_index[k] for k in systems if k in idx.system_index))
    else:
        chosen = list(range(len(idx.system_keys)))
    if not chosen:
        return []
    seen: set[int] = set()
    hits = _code_hits(idx, query, chosen, limit, include_inactive, seen)
    if len(hits) >= limit:
        return hits
    qwords = list(dict.fromkeys(WORD.findall(fold(query))))
    if not qwords:
        return hits
    parts = [idx.parts[k] for s in chosen for k in ((s, True), (s, False)) if k in idx.parts and (k[1] or include_inactive)]
    if not parts:
        return hits
    vocab, word_id = idx.vocab, idx.word_id
    prefix = [[_prefix_range(vocab, w)] for w in qwords]
    exact = [[(word_id[w], word_id[w] + 1)] if w in word_id else None for w in qwords]
    unmatched = [i for i, r in enumerate(prefix) if not any(_count(p, r) for p in parts)]
    n_terms = idx.terms
    stages: list[tuple[str, list[_Ranges], int, int]] = []
    if not unmatched:
        for match, t_lo, t_hi in (("preferred", 0, idx.n_preferred), ("synonym", idx.n_preferred, n_terms)):
            if all(e is not None for e in exact):
                stages.append((match, exact, t_lo, t_hi))  # whole words first
            stages.append((match, prefix, t_lo, t_hi))
    else:
        fuzzy = list(prefix)
        for i in unmatched:
            alternatives = _fuzzy_words(idx, qwords[i])
            if not alternatives:
                return hits
            fuzzy[i] = [(w, w + 1) for w in alternatives]
        stages.append(("fuzzy", fuzzy, 0, n_terms))
    for match, words, t_lo, t_hi in stages:
        need = limit - len(hits)
        for t in _collect(idx, parts, words, t_lo, t_hi, need, seen):
            c = idx.t_concept[t]
            seen.add(c)
            hits.append(_hit(idx, c, idx.term_text(t), match))
        if len(hits) >= limit:
            break
    return hits


# --- the process's index and its freshness --------------------------------------------------

_index: _Index | None = None
_generation = 0  # bumped by invalidate(); an index built at an older generation is stale
_checked_at = 0.0
_locks: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()


def search_sync(query: str, systems: Sequence[str] | None = None, limit: int = 20, include_inactive: bool = False) -> list[Hit]:
    """Search the loaded index (see :func:`ensure_index`); no database access."""
    idx = _index
    if idx is None:
        raise RuntimeError("The coding search index is not loaded: await plugins.coding.search.ensure_index() first.")
    return _search(idx, query, systems, limit, include_inactive)


async def search(query: str, systems: Sequence[str] | None = None, limit: int = 20, include_inactive: bool = False) -> list[Hit]:
    """Search, after reloading the index if the store changed (checked at most once a second)."""
    if not (query or "").strip():
        return []
    await ensure_index()
    return search_sync(query, systems, limit, include_inactive)


def invalidate() -> None:
    """The store changed in this process: the next search reloads the index."""
    global _generation
    _generation += 1


def index_stats() -> dict:
    """Sizes and build times of the loaded index (empty before the first search)."""
    return dict(_index.stats) if _index is not None else {}


def _lock() -> asyncio.Lock:
    # One lock per event loop: a lock is bound to the loop that first waits on it.
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


def _fresh_enough() -> bool:
    return _index is not None and _index.generation == _generation and time.monotonic() - _checked_at < CHECK_EVERY


async def ensure_index() -> None:
    """Load the index if there is none, or reload it if the store changed since it was built."""
    global _index, _checked_at
    if _fresh_enough():
        return
    async with _lock():
        if _fresh_enough():  # another search did it while this one waited
            return
        generation = _generation
        signature = await _signature()
        if _index is not None and _index.generation == generation and _index.signature == signature:
            _checked_at = time.monotonic()
            return
        started = time.perf_counter()
        for _ in range(3):
            rows = await _read_rows()
            after = await _signature()
            if after == signature:
                break
            signature = after  # an import committed while reading: read again, whole
        read = time.perf_counter() - started
        index = await asyncio.to_thread(build_index, *rows, signature)
        del rows
        _give_back_memory()
        index.generation = generation
        index.stats["seconds_read"] = round(read, 3)
        _index = index
        _checked_at = time.monotonic()


def _give_back_memory() -> None:
    """Hand the build's freed memory back to the system (glibc keeps it otherwise: ~20 MB)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


async def _signature() -> tuple:
    """Cheap and changed by every import or replacement (a new row, with its time and size)."""
    from plugins.coding.tables import CodeSystem

    rows = await CodeSystem.select(
        CodeSystem.id, CodeSystem.key, CodeSystem.imported_at, CodeSystem.concepts
    ).order_by(CodeSystem.id)
    return tuple((r["id"], r["key"], str(r["imported_at"]), r["concepts"]) for r in rows)


async def _read_rows() -> tuple[list, list, list]:
    """Systems, concepts and designations as tuples, read in chunks by id (keyset)."""
    from plugins.coding.tables import CodeSystem, Concept, Designation

    systems = [(r["id"], r["key"]) for r in await CodeSystem.select(CodeSystem.id, CodeSystem.key)]
    kinds: dict[str, str] = {}  # one string per kind, not one per row
    concepts: list[tuple] = []
    last = 0
    while True:
        rows = await Concept.select(
            Concept.id, Concept.system, Concept.code, Concept.display, Concept.kind, Concept.active
        ).where(Concept.id > last).order_by(Concept.id).limit(READ_CHUNK)
        concepts.extend(
            (r["id"], r["system"], r["code"], r["display"], kinds.setdefault(r["kind"], r["kind"]), bool(r["active"])) for r in rows
        )
        if len(rows) < READ_CHUNK:
            break
        last = rows[-1]["id"]
    designations: list[tuple] = []
    last = 0
    while True:
        rows = await Designation.select(
            Designation.id, Designation.concept, Designation.term, Designation.use
        ).where(Designation.id > last).order_by(Designation.id).limit(READ_CHUNK)
        designations.extend((r["concept"], r["term"], PREFERRED if r["use"] == "preferred" else SYNONYM) for r in rows)
        if len(rows) < READ_CHUNK:
            break
        last = rows[-1]["id"]
    return systems, concepts, designations


_warming: set = set()


def warm() -> None:
    """Start loading the index in the background, if it is not loaded (a page with a code picker
    calls this, so the first search a user types does not wait for the index to be built)."""
    if _index is not None or _warming:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no event loop (a template rendered outside the app): the first search loads it

    async def load() -> None:
        try:
            await ensure_index()
        except Exception:  # noqa: BLE001 - a failed warm-up is retried by the first search
            pass

    task = loop.create_task(load())
    _warming.add(task)  # a reference, so the task is not collected before it ends
    task.add_done_callback(_warming.discard)
