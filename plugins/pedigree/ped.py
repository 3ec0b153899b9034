"""The LINKAGE/PLINK PED format: family, individual, father, mother, sex (1/2/0), affection (1/2/0, -9),
then, in a genotype file, one pair of allele columns per marker. A PLINK ``.fam`` file is the first six.

As PLINK and LINKAGE define it, a PED file has ONE affection column; what follows it are genotypes,
which CPMS does not keep: the import says how many markers it left out. Several affection columns
(one per condition) are read when the caller names them, or when the file says so in the header
comment that :func:`export_ped` writes for them (``# CPMS affection columns: ataxia deafness``).
PLINK allows one known parent: the other becomes an added person of unknown status. Couples who share
an ancestor are marked consanguineous, as a drawing of the file would show them.

PED keeps only descent, sex and affection, so :func:`export_ped` is lossy and says what it drops.
Canonical form (what export writes, and what round-trips exactly): one line per individual in the
pedigree's order, fields separated by one space, missing parents and phenotypes as ``0``; an
import reads any whitespace, ``#`` comments and ``-9`` (read as unknown, written back as ``0``).
"""

from __future__ import annotations

from __future__ import annotations

import re

from plugins.pedigree.model import Pedigree, PedigreeError, _cycles

SEX_CODE = {"male": "1", "female": "2", "unknown": "0"}
SEX_OF = {v: k for k, v in SEX_CODE.items()}
PHENO_CODE = {"affected": "2", "unaffected": "1", "unknown": "0"}
PHENO_OF = {"2": "affected", "1": "unaffected", "0": "unknown", "-9": "unknown"}
#: The header comment naming several affection columns (written by export, read by import).
COLUMNS_HEADER = "# CPMS affection columns:"
_COLUMNS_RE = re.compile(r"^#\s*CPMS affection columns:\s*(.*)$", re.I)


def export_ped(pedigrees: Pedigree | list[Pedigree], conditions: list[str] | None = None) -> tuple[str, list[str]]:
    """(PED text, warnings about what the format cannot carry). One affection column per condition in
    ``conditions`` (default: every condition of the first pedigree; none gives a single ``0`` column)."""
    peds = [pedigrees] if isinstance(pedigrees, Pedigree) else list(pedigrees)
    chosen = list(conditions) if conditions is not None else list(peds[0].conditions) if peds else []
    warnings: list[str] = []
    lines: list[str] = []

    def warn(text: str) -> None:
        if text not in warnings:
            warnings.append(text)

    for ped in peds:
        fam = ped.family_id
        problems = [f"{what} {value!r} cannot be written to PED (whitespace, empty or '0')"
                    for what, value in [("family id", fam)] + [("individual id", i) for i in ped.individuals]
                    if not value or value == "0" or any(ch.isspace() for ch in value)]
        if problems:
            raise PedigreeError(problems)
        dropped = [c for c in ped.conditions if c not in chosen]
        if dropped:
            warn(f"family {fam}: conditions not exported: {', '.join(dropped)}")
        for cid in chosen:
            if cid not in ped.conditions:
                raise PedigreeError([f"family {fam}: unknown condition {cid!r}"])
        index = ped.parents_index()
        for pid, ind in ped.individuals.items():
            p = index.get(pid)
            father, mother = ("0", "0") if p is None else (p.a, p.b)
            if p is not None:
                if ped.individuals[father].sex == "female" and ped.individuals[mother].sex != "female":
                    father, mother = mother, father
                sexes = (ped.individuals[father].sex, ped.individuals[mother].sex)
                if sexes != ("male", "female"):
                    warn(f"family {fam}: parents {father} and {mother} are not a male and a female; "
                         f"{father} is written as the father")
            pheno = []
            for cid in chosen:
                status = ind.conditions.get(cid, "unknown")
                if status in ("carrier", "presymptomatic"):
                    warn(f"family {fam}: {status} status is written as unaffected (1)")
                pheno.append(PHENO_CODE.get(status, "1"))
            lines.append(" ".join([fam, pid, father, mother, SEX_CODE[ind.sex]] + (pheno or ["0"])))
            lost = [name for name, on in [
                ("deceased", ind.deceased), ("ages and years", ind.age is not None or ind.birth_year is not None
                                             or ind.death_year is not None),
                ("proband/consultand", ind.proband or ind.consultand), ("genotypes", bool(ind.genotypes)),
                ("notes", bool(ind.note)), ("adoption", bool(ind.adopted)), ("pregnancies", bool(ind.pregnancy)),
                ("gender identity", bool(ind.gender_identity)), ("tested", ind.tested),
                ("infertility / no children by choice", ind.infertility or ind.no_children_by_choice),
                ("birth order", ind.order is not None)] if on]
            for name in lost:
                warn(f"PED has no place for {name}: dropped")
        for p in ped.partnerships:
            if not p.children:
                warn(f"family {fam}: partnerships without children are dropped ({p.a}+{p.b})")
            if p.consanguineous:
                warn(f"family {fam}: consanguinity is only implied by shared ancestors ({p.a}+{p.b})")
            if p.separated:
                warn(f"family {fam}: separation is dropped ({p.a}+{p.b})")
        if ped.twins:
            warn(f"family {fam}: twins are dropped (PED has no twin column)")
    header = f"{COLUMNS_HEADER} {' '.join(chosen)}\n" if len(chosen) > 1 else ""
    return header + "".join(line + "\n" for line in lines), warnings


def import_ped(text: str, condition_ids: list[str] | None = None, notes: list[str] | None = None) -> list[Pedigree]:
    """Pedigrees (one per family, in file order); :class:`PedigreeError` lists every bad line, with its
    number. What the import leaves out or adds (genotypes, unknown parents, consanguinity) is
    appended to ``notes``, one sentence each."""
    notes = notes if notes is not None else []
    problems: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    width = None
    declared: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _COLUMNS_RE.match(raw.strip())
        if header and declared is None and not rows:
            declared = header.group(1).split()
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 6:
            problems.append(f"line {number}: expected at least 6 columns (family, individual, father, mother, sex, "
                            f"phenotype), got {len(fields)}")
            continue
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            problems.append(f"line {number}: expected {width} columns like the first line, got {len(fields)}")
            continue
        rows.append((number, fields))
    named = list(condition_ids) if condition_ids else declared
    n_pheno = len(named) if named else 1
    cids = named or ["phenotype"]
    extra = (width or 6) - 5 - n_pheno
    if extra < 0:
        problems.append(f"{n_pheno} affection columns named, but the lines have only {(width or 6) - 5} after the sex")
        extra = 0
    elif extra % 2:
        problems.append(f"after the affection column{'s' if n_pheno > 1 else ''}, a PED file holds genotypes as pairs "
                        f"of allele columns; these lines have {extra} columns there (an odd number)")
    elif extra:
        notes.append(f"The file holds genotypes for {extra // 2} marker(s); CPMS keeps no genotype columns, "
                     f"so they were not imported.")

    families: dict[str, dict[str, tuple[int, list[str]]]] = {}
    for number, fields in rows:
        fam, iid, father, mother, sex = fields[:5]
        seen = families.setdefault(fam, {})
        if iid == "0":
            problems.append(f"line {number}: individual id '0' means 'missing' in PED")
            continue
        if iid in seen:
            problems.append(f"line {number}: duplicate individual {iid!r} in family {fam!r} "
                            f"(first on line {seen[iid][0]})")
            continue
        if sex not in SEX_OF:
            problems.append(f"line {number}: sex code {sex!r} of {iid} is not 1 (male), 2 (female) or 0 (unknown)")
        for value in fields[5:5 + n_pheno]:
            if value not in PHENO_OF:
                problems.append(f"line {number}: phenotype {value!r} of {iid} is not 2 (affected), 1 (unaffected), "
                                f"0 or -9 (unknown)")
        if iid in (father, mother):
            problems.append(f"line {number}: {iid} is their own parent")
        seen[iid] = (number, fields)

    for fam, members in families.items():
        for iid, (number, fields) in members.items():
            father, mother = fields[2], fields[3]
            for role, pid, bad_sex in (("father", father, "2"), ("mother", mother, "1")):
                if pid == "0":
                    continue
                if pid not in members:
                    problems.append(f"line {number}: {role} {pid!r} of {iid} is not in the file (family {fam})")
                elif members[pid][1][4] == bad_sex:
                    problems.append(f"line {number}: {role} {pid!r} of {iid} is "
                                    f"{'female' if bad_sex == '2' else 'male'} (line {members[pid][0]})")
    if problems:
        raise PedigreeError(problems)

    out = []
    for fam, members in families.items():
        ped = Pedigree(family_id=fam)
        for cid in cids:
            ped.condition(cid, cid)
        for iid, (_, fields) in members.items():
            ped.person(iid, SEX_OF[fields[4]], conditions={
                cid: PHENO_OF[v] for cid, v in zip(cids, fields[5:5 + n_pheno]) if PHENO_OF[v] != "unknown"})
        added: dict[str, str] = {}
        for iid, (_, fields) in members.items():
            father, mother = fields[2], fields[3]
            if father == "0" and mother == "0":
                continue
            if father == "0" or mother == "0":
                # PLINK: one parent known. The other is a person of unknown status, one per known parent,
                # so children of the same known parent stay full siblings.
                known, missing_role = (father, "mother") if mother == "0" else (mother, "father")
                if known not in added:
                    other = _free_id(ped, f"{known}-partner")
                    ped.person(other, "female" if missing_role == "mother" else "male")
                    added[known] = other
                father, mother = (known, added[known]) if missing_role == "mother" else (added[known], known)
            ped.partner(father, mother, children=[iid])
        if added:
            notes.append(f"Family {fam}: {len(added)} parent(s) not in the file were added as people of unknown "
                         f"status (PLINK allows one known parent).")
        cycles = _cycles(ped)
        if cycles:
            line_of = {iid: number for iid, (number, _) in members.items()}
            problems += [f"line {line_of[c.split(' ', 1)[0]]}: {c}" for c in cycles]
        else:
            marked = _mark_consanguinity(ped)
            if marked:
                notes.append(f"Family {fam}: {', '.join(marked)} share an ancestor: marked consanguineous.")
        out.append(ped)
    if problems:
        raise PedigreeError(problems)
    return out


def _free_id(ped: Pedigree, wanted: str) -> str:
    candidate, n = wanted, 1
    while candidate in ped.individuals:
        n += 1
        candidate = f"{wanted}{n}"
    return candidate


def _ancestors(ped: Pedigree, iid: str) -> set[str]:
    """Everyone ``iid`` descends from (the pedigree has no cycles here)."""
    index = ped.parents_index()
    seen: set[str] = set()
    todo = [iid]
    while todo:
        p = index.get(todo.pop())
        if p is not None:
            for parent in (p.a, p.b):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
    return seen


def _mark_consanguinity(ped: Pedigree) -> list[str]:
    """Mark couples related by descent (a shared ancestor, or one the other's ancestor); their names."""
    marked = []
    for p in ped.partnerships:
        a_line, b_line = _ancestors(ped, p.a) | {p.a}, _ancestors(ped, p.b) | {p.b}
        if a_line & b_line and not p.consanguineous:
            p.consanguineous = True
            marked.append(f"{p.a} and {p.b}")
    return marked
