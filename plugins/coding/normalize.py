"""Text and code folding shared by the search index and its queries.

A term and a query are compared after the same folding, so "Sjögren", "SJOGREN" and "sjogren"
meet: Unicode compatibility decomposition (NFKD: ligatures, superscripts, accents split off),
combining marks dropped, ``casefold`` (ß -> ss), then the letters NFKD leaves whole mapped to
their usual Latin spelling (æ -> ae, ø -> o, ł -> l...), and Greek letters spelt out, because
terms write both "β-thalassemia" and "beta-thalassemia".

Codes are compared without case or punctuation ("G11.1" = "g111", "2345-7" = "23457"), and a
system's own prefix is recognised in a query ("ORPHA:95", "HP_0001250", "OMIM 229300").
"""

from __future__ import annotations

import re
import unicodedata

#: Letters NFKD does not decompose, after casefold.
_LETTERS = {
    "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d", "ħ": "h", "ı": "i", "ł": "l", "ŀ": "l",
    "ŋ": "n", "þ": "th", "ŧ": "t", "ſ": "s", "ĸ": "k",
    # Greek letters as written in clinical terms (α-thalassemia, κ light chain, β2-microglobulin).
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "ζ": "zeta", "η": "eta",
    "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu", "ξ": "xi",
    "ο": "omicron", "π": "pi", "ρ": "rho", "σ": "sigma", "ς": "sigma", "τ": "tau", "υ": "upsilon",
    "φ": "phi", "χ": "chi", "ψ": "psi", "ω": "omega",
}
_TABLE = str.maketrans(_LETTERS)
#: Apostrophes join ("Alzheimer's" -> "alzheimers", so "alzheimer" is a prefix of it).
_APOSTROPHES = str.maketrans({"'": None, "\u2019": None, "\u02bc": None, "\u2018": None})
#: Runs of letters or digits of any script (``\w`` without the underscore).
WORD = re.compile(r"[^\W_]+")
_NOT_ALNUM = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """``text`` without accents or case, for comparison only (never shown)."""
    if text.isascii():  # the common case, and 20 times faster
        text = text.lower()
        return text.replace("'", "") if "'" in text else text
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return bare.casefold().translate(_TABLE).translate(_APOSTROPHES)


def words(text: str) -> list[str]:
    """The folded words of ``text``, in order (duplicates kept)."""
    return WORD.findall(fold(text))


def compact(text: str) -> str:
    """Folded, with everything but letters and digits removed: how codes are compared."""
    return _NOT_ALNUM.sub("", fold(text))


#: Prefixes people put before a system's codes ("ORPHA:95", "HP:0001250", "MIM #229300"),
#: compacted. HPO's own codes carry "HP:" (stored so), which is stripped for comparison.
CODE_PREFIXES: dict[str, tuple[str, ...]] = {
    "ORPHA": ("orphanet", "orphacode", "orpha"),
    "OMIM": ("omim", "mim"),
    "HPO": ("hpo", "hp"),
}
_PREFIX_SYSTEM = sorted(
    ((prefix, key) for key, prefixes in CODE_PREFIXES.items() for prefix in prefixes),
    key=lambda item: -len(item[0]),  # longest first: "orphanet" before "orpha"
)


def code_key(system: str, code: str) -> str:
    """How a stored code is compared: compacted, without its system's own prefix."""
    key = compact(code)
    for prefix in CODE_PREFIXES.get(system, ()):
        if key.startswith(prefix) and key[len(prefix):].isdecimal():
            return key[len(prefix):]
    return key


def code_query(query: str) -> tuple[str | None, str] | None:
    """A query that can be a code: ``(system named by a prefix or None, compacted code)``.

    A code is one token ("G11.1", "HP_0001250", "2345-7") or a known prefix and a token
    ("ORPHA 95", "MIM: 229300"); text with spaces otherwise is not a code."""
    parts = query.split()
    if not parts or len(parts) > 2:
        return None
    if len(parts) == 2:
        head = compact(parts[0])
        if not any(head == prefix for prefix, _ in _PREFIX_SYSTEM):
            return None
    key = compact("".join(parts))
    if not key:
        return None
    for prefix, system in _PREFIX_SYSTEM:
        rest = key[len(prefix):]
        if key.startswith(prefix) and rest and rest[0].isdecimal():
            return system, rest
    if len(parts) == 2:
        return None
    return None, key
