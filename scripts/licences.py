"""Print the Python part of docs/dependencies.md from the installed package metadata.

Run it with the project's virtualenv, after `./dev setup`:

    .venv/bin/python scripts/licences.py            # Markdown tables, runtime then test-only
    .venv/bin/python scripts/licences.py --check    # also exit 1 if a licence is unclear or not compatible

The runtime group is everything `cpms` needs without extras (followed through each
package's own requirements and the extras it asks for); the test group is what the
`test` extra adds on top. Each licence is read from the package's `License-Expression`,
else its `License` field, else its `License ::` classifiers, else its licence file.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "cpms"

# Licences that EUPL-1.2 code can depend on (see "Licence policy" in docs/dependencies.md).
PERMISSIVE = {
    "0BSD", "Apache-2.0", "BSD-1-Clause", "BSD-2-Clause", "BSD-3-Clause", "BSD-4.3TAHOE", "CC0-1.0",
    "IJG", "ISC", "libpng-2.0", "libtiff", "LicenseRef-Public-Domain", "MIT", "MIT-0", "PostgreSQL",
    "PSF-2.0", "Python-2.0", "Unlicense", "Zlib", "blessing", "MIT-CMU",
    # Metadata that says only "BSD" (no licence file shipped): every BSD variant is permissive.
    "BSD",
}
WEAK_COPYLEFT = {"MPL-2.0", "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later"}
SAME = {"EUPL-1.1", "EUPL-1.2"}
STRONG_COPYLEFT = re.compile(r"^A?GPL-")

# What the `License` field and `License ::` classifiers say, as SPDX identifiers.
ALIASES = {
    "mit": "MIT", "mit license": "MIT", "the mit license": "MIT",
    "mit no attribution": "MIT-0",
    "apache 2.0": "Apache-2.0", "apache-2.0": "Apache-2.0", "apache license 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0", "apache license, version 2.0": "Apache-2.0",
    "bsd": "BSD", "bsd license": "BSD", "bsd-2-clause": "BSD-2-Clause", "bsd-3-clause": "BSD-3-Clause",
    "3-clause bsd license": "BSD-3-Clause",
    "isc": "ISC", "isc license (iscl)": "ISC",
    "mpl-2.0": "MPL-2.0", "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "python software foundation license": "PSF-2.0", "psf-2.0": "PSF-2.0", "psfl": "PSF-2.0",
    "unlicense": "Unlicense", "the unlicense (unlicense)": "Unlicense",
    "gnu general public license v3 (gplv3)": "GPL-3.0-only", "gpl v3.0": "GPL-3.0-only",
    "gnu lesser general public license v2 or later (lgplv2+)": "LGPL-2.1-or-later",
    "european union public licence 1.2 (eupl 1.2)": "EUPL-1.2",
    "cc0 1.0 universal (cc0 1.0) public domain dedication": "CC0-1.0",
}


def spdx(text: str) -> str | None:
    text = text.strip()
    if text.lower() in ALIASES:
        return ALIASES[text.lower()]
    return None


def licence_files(dist: md.Distribution) -> list[str]:
    out = []
    for f in dist.files or []:
        name = f.name.upper()
        if ("LICEN" in name or "COPYING" in name) and ".dist-info" in str(f):
            try:
                out.append(Path(f.locate()).read_text(encoding="utf-8", errors="replace"))
            except OSError:
                pass
    return out


def from_text(text: str) -> str | None:
    """Recognise the common permissive licence texts (used when metadata is vague)."""
    t = " ".join(text.split()).lower()
    if "mit no attribution" in t:
        return "MIT-0"
    if "permission is hereby granted, free of charge" in t:
        return "MIT"
    if "redistribution and use in source and binary forms" in t:
        return "BSD-3-Clause" if "neither the name" in t or "names of its contributors" in t else "BSD-2-Clause"
    if "apache license" in t and "version 2.0" in t:
        return "Apache-2.0"
    return None


def licence_of(dist: md.Distribution) -> tuple[str, str]:
    """(SPDX expression or best description, where it was read)."""
    meta = dist.metadata
    if meta.get("License-Expression"):
        return meta["License-Expression"].strip(), "License-Expression"
    field = (meta.get("License") or "").strip()
    # "LICENSE", "see LICENSE": the field names the file instead of the licence; read the file.
    if field and "\n" not in field and len(field) < 100 and not re.fullmatch(r"(?i)(see )?licen[cs]e(\.\w+)?", field):
        return spdx(field) or field, "License"
    if field:  # the whole licence text pasted into the field
        found = from_text(field)
        if found:
            return found, "License (full text)"
    found = sorted({spdx(c.split("::")[-1]) or c.split("::")[-1].strip()
                    for c in meta.get_all("Classifier") or [] if c.startswith("License ::")})
    if found == ["BSD"]:  # the classifier does not say which BSD: read the file
        for text in licence_files(dist):
            exact = from_text(text)
            if exact and exact.startswith("BSD"):
                return exact, "Classifier + licence file"
    if found:
        return " OR ".join(found), "Classifier"
    for text in licence_files(dist):
        exact = from_text(text)
        if exact:
            return exact, "licence file"
    return "UNKNOWN", "-"


def verdict(expr: str) -> str:
    """'yes', 'yes (weak copyleft)', 'no (GPL)' or 'check' for an SPDX expression."""
    rank = {"no (GPL)": 0, "check": 1, "yes (weak copyleft)": 2, "yes": 3}
    tokens = re.findall(r"\(|\)|[^\s()]+", expr)
    pos = 0

    def atom() -> str:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            value = either()
            pos += 1  # ")"
            return value
        ident = tok.rstrip("+")
        if ident in PERMISSIVE or ident in SAME:
            return "yes"
        if ident in WEAK_COPYLEFT or ident.startswith("LGPL-"):
            return "yes (weak copyleft)"
        if STRONG_COPYLEFT.match(ident):
            return "no (GPL)"
        return "check"

    def both() -> str:
        nonlocal pos
        value = atom()
        while pos < len(tokens) and tokens[pos].upper() == "AND":
            pos += 1
            value = min(value, atom(), key=rank.get)
        return value

    def either() -> str:
        nonlocal pos
        value = both()
        while pos < len(tokens) and tokens[pos].upper() == "OR":
            pos += 1
            value = max(value, both(), key=rank.get)
        return value

    if not tokens:
        return "check"
    return either()


def closure(roots: list[Requirement]) -> dict[str, md.Distribution]:
    """Installed distributions reached from roots, following markers and requested extras."""
    seen: dict[str, md.Distribution] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        seen[key[0]] = dist
        envs = [{"extra": ""}] + [{"extra": e} for e in req.extras]
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append(sub)
    return seen


def groups() -> tuple[dict[str, md.Distribution], dict[str, md.Distribution]]:
    project = md.distribution(PROJECT)
    base, test = [], []
    for raw in project.requires or []:
        req = Requirement(raw)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            base.append(req)
        elif req.marker.evaluate({"extra": "test"}):
            test.append(req)
    runtime = closure(base)
    everything = closure(base + test)
    return runtime, {k: v for k, v in everything.items() if k not in runtime}


def table(dists: dict[str, md.Distribution]) -> tuple[list[str], list[str]]:
    lines = [
        "| Package | Version | Licence | Read from | EUPL-1.2 compatible |",
        "| --- | --- | --- | --- | --- |",
    ]
    problems = []
    for key in sorted(dists):
        dist = dists[key]
        expr, source = licence_of(dist)
        ok = verdict(expr)
        if not ok.startswith("yes"):
            problems.append(f"{dist.metadata['Name']} {dist.version}: {expr} -> {ok}")
        lines.append(f"| {dist.metadata['Name']} | {dist.version} | {expr} | {source} | {ok} |")
    return lines, problems


def locked_names() -> set[str]:
    lock = ROOT / "requirements.lock"
    names = set()
    for line in lock.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            names.add(canonicalize_name(line.split("==")[0]))
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a licence is unclear or not compatible")
    args = parser.parse_args()

    runtime, test = groups()
    problems = []
    for title, dists in (("Python, runtime (installed with `cpms`)", runtime),
                         ("Python, test-only (the `test` extra)", test)):
        lines, bad = table(dists)
        problems += bad
        print(f"#### {title}\n")
        print("\n".join(lines))
        print()
    missing = locked_names() - set(runtime) - set(test)
    if missing:
        print(f"In requirements.lock but not reached from `{PROJECT}`: {', '.join(sorted(missing))}\n")
    if problems:
        print("Needs a look:\n")
        print("\n".join(f"- {p}" for p in problems))
    return 1 if (args.check and (problems or missing)) else 0


if __name__ == "__main__":
    sys.exit(main())
