"""The linkage/PLINK PED format: family, individual, father, mother, sex (1/2/0), affection (1/2/0, -9).

PED keeps only descent, sex and affection, so :func:`export_ped` is lossy and says what it drops.
Canonical form (what export writes, and what round-trips exactly): one line per individual in the
pedigree's order, fields separated by one space, missing parents and phenotypes as ``0``; an
import reads any whitespace, ``#`` comments and ``-9`` (read as unknown, written back as ``0``).
"""

from __future__ import annotations

from plugins.pedigree.model import Pedigree, PedigreeError, _cycles

SEX_CODE = {"male": "1", "female": "2", "unknown": "0"}
SEX_OF = {v: k for k, v in SEX_CODE.items()}
PHENO_CODE = {"affected": "2", "unaffected": "1", "unknown": "0"}
PHENO_OF = {"2": "affected", "1": "unaffected", "0": "unknown", "-9": "unknown"}


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
    return "".join(line + "\n" for line in lines), warnings


def import_ped(text: str, condition_ids: list[str] | None = None) -> list[Pedigree]:
    """Pedigrees (one per family, in file order); :class:`PedigreeError` lists every bad line, with its number."""
    problems: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    width = None
    for number, raw in enumerate(text.splitlines(), start=1):
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
    n_pheno = (width or 6) - 5
    cids = list(condition_ids) if condition_ids else (["phenotype"] if n_pheno == 1 else
                                                     [f"phenotype{i + 1}" for i in range(n_pheno)])
    if len(cids) != n_pheno:
        problems.append(f"{len(cids)} condition ids given for {n_pheno} phenotype columns")
        cids = [f"phenotype{i + 1}" for i in range(n_pheno)]

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
        for value in fields[5:]:
            if value not in PHENO_OF:
                problems.append(f"line {number}: phenotype {value!r} of {iid} is not 2 (affected), 1 (unaffected), "
                                f"0 or -9 (unknown)")
        if (father == "0") != (mother == "0"):
            problems.append(f"line {number}: {iid} has only one parent; give both or neither (0 0)")
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
            ped.person(iid, SEX_OF[fields[4]],
                       conditions={cid: PHENO_OF[v] for cid, v in zip(cids, fields[5:]) if PHENO_OF[v] != "unknown"})
        for iid, (_, fields) in members.items():
            if fields[2] != "0":
                ped.partner(fields[2], fields[3], children=[iid])
        cycles = _cycles(ped)
        if cycles:
            line_of = {iid: number for iid, (number, _) in members.items()}
            problems += [f"line {line_of[c.split(' ', 1)[0]]}: {c}" for c in cycles]
        out.append(ped)
    if problems:
        raise PedigreeError(problems)
    return out
