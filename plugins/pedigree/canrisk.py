"""The CanRisk / BOADICEA pedigree file (``##CanRisk 2.0``), so a family can be opened in CanRisk.

A tab-separated file: the ``##CanRisk 2.0`` line, the column line (``##FamID Name Target …``), then
one line per person. Written from what the model knows, and nothing else:

- ids and names are the generation/number labels (``II-3``), never internal ids or real names;
- ``Target`` is the consultand when there is exactly one, else the proband (CanRisk computes the
  target's risks: the person asking, NSGC's consultand);
- the four cancer columns come from conditions recognised as breast, ovarian, prostate or pancreatic
  cancer (by ICD-10 or HPO code, else by an English name); the model has no age at diagnosis, so an
  affected person gets ``AU`` (affected, age unknown: the format's ``0`` would mean unaffected) and
  everyone else ``0``; a second breast cancer (``BC2``) is never known;
- gene columns from the genotypes of the nine BOADICEA genes: pathogenic or likely pathogenic is
  ``T:P``, a negative result ``T:N`` (the model does not say whether it was a full search, ``S``, or a
  test for the family's variant, ``T``); anything else is ``0:0`` (untested, as CanRisk reads a VUS);
- Ashkenazi ancestry and the tumour pathology are not recorded: ``0`` and ``0:0:0:0:0``.

CanRisk needs a male father and a female mother and has no place for pregnancies, so a parent of
unknown sex takes the sex opposite to their partner's, and pregnancies and childless people of unknown
sex are left out. Every such loss is returned as a warning (the format has no comment lines).
"""

from __future__ import annotations

import re

from plugins.pedigree.model import Pedigree, PedigreeError, validate

HEADER = "##CanRisk 2.0"
GENES = ["BRCA1", "BRCA2", "PALB2", "ATM", "CHEK2", "BARD1", "RAD51D", "RAD51C", "BRIP1"]
CANCERS = ["BC1", "BC2", "OC", "PRO", "PAN"]
COLUMNS = (["FamID", "Name", "Target", "IndivID", "FathID", "MothID", "Sex", "MZtwin", "Dead", "Age", "Yob"]
           + CANCERS + ["Ashkn"] + GENES + ["ER:PR:HER2:CK14:CK56"])
TWIN_CODES = "123456789A"  # the format's codes for monozygotic twin sets
MAX_ID, MAX_NAME, MAX_FAMILY = 7, 8, 13  # the format's field lengths
# a condition is a cancer of the model when coded so (ICD-10 category, HPO term) or named so
CODES = {"BC1": {("ICD-10", "C50"), ("HPO", "HP:0003002")},
         "OC": {("ICD-10", "C56"), ("HPO", "HP:0100615")},
         "PRO": {("ICD-10", "C61"), ("HPO", "HP:0012125")},
         "PAN": {("ICD-10", "C25"), ("HPO", "HP:0002894")}}
NAMES = {"BC1": r"breast", "OC": r"ovar(y|ian)", "PRO": r"prostat", "PAN": r"pancrea"}
POSITIVE = {"pathogenic", "likely pathogenic"}
NEGATIVE = {"negative", "benign", "likely benign", "normal", "no variant found"}


def cancer_of(system: str | None, code: str | None, label: str) -> str | None:
    """The CanRisk column (BC1, OC, PRO, PAN) a condition fills, or None."""
    sys_ = (system or "").upper().replace("ICD10", "ICD-10")
    category = (code or "").upper().split(".")[0] if sys_ == "ICD-10" else (code or "").upper()
    for column, codes in CODES.items():
        if (sys_, category) in codes:
            return column
    text = label.lower()
    if re.search(r"syndrome|predisposition|susceptibility|risk", text):
        return None  # e.g. hereditary breast and ovarian cancer syndrome: a diagnosis, not a cancer someone had
    if re.search(r"\b(cancer|carcinoma|adenocarcinoma)\b", text):
        for column, pattern in NAMES.items():
            if re.search(pattern, text):
                return column
    return None


def export_canrisk(ped: Pedigree, labels: dict[str, str]) -> tuple[str, list[str]]:
    """(file text, warnings about what it leaves out or guesses). Raises :class:`PedigreeError` when
    CanRisk cannot take the family (parents of the same sex)."""
    validate(ped)
    warnings: list[str] = []

    def warn(text: str) -> None:
        if text not in warnings:
            warnings.append(text)

    people = ped.individuals
    has_children = {x for p in ped.partnerships if p.children for x in p.pair}
    sex = {pid: {"male": "M", "female": "F"}.get(ind.sex) for pid, ind in people.items()}
    for p in ped.partnerships:
        if not p.children:
            continue
        a, b = sex[p.a], sex[p.b]
        if a and b and a == b:
            raise PedigreeError([f"CanRisk needs a father and a mother: {labels.get(p.a, p.a)} and "
                                 f"{labels.get(p.b, p.b)} are both {people[p.a].sex}."])
        if not a or not b:
            a, b = (a, {"M": "F", "F": "M"}[a]) if a else ({"M": "F", "F": "M"}[b], b) if b else ("M", "F")
            for pid, value in ((p.a, a), (p.b, b)):
                if sex[pid] not in (None, value):
                    raise PedigreeError([f"CanRisk needs a sex for {labels.get(pid, pid)}, a parent with partners "
                                         "of both sexes."])
                if sex[pid] is None:
                    sex[pid] = value
                    warn(f"{labels.get(pid, pid)}: sex unknown, written as {'male' if value == 'M' else 'female'} "
                         "(CanRisk needs a father and a mother)")
    left_out = [pid for pid, ind in people.items()
                if pid not in has_children and (ind.pregnancy or sex[pid] is None)]
    if left_out:
        warn("left out (pregnancies, and people of unknown sex without children: CanRisk has no place for them): "
             + ", ".join(labels.get(x, x) for x in left_out))

    cancers: dict[str, str] = {}
    for cond in ped.conditions.values():
        column = cancer_of(cond.system, cond.code, cond.label)
        if column is None:
            warn(f"not a cancer CanRisk models, left out: {cond.label}")
        elif column in cancers.values():
            warn(f"{cond.label}: a second condition for the same CanRisk column, left out")
        else:
            cancers[cond.id] = column
    if cancers:
        warn("ages at cancer diagnosis are not recorded: affected people are written 'AU' (age unknown); "
             "a second breast cancer (BC2) is never written")

    ids: dict[str, str] = {}
    for n, pid in enumerate(people, start=1):
        label = labels.get(pid, pid)
        ids[pid] = label if len(label) <= MAX_ID and not any(c.isspace() for c in label) else str(n)
        if ids[pid] != label:
            warn(f"{label}: longer than CanRisk's {MAX_ID} characters, written as {ids[pid]}")

    twin_code: dict[str, str] = {}
    mz = [t for t in ped.twins if t.monozygotic]
    for code, group in zip(TWIN_CODES, mz):
        for pid in group.ids:
            twin_code[pid] = code
    if len(mz) > len(TWIN_CODES):
        warn(f"more than {len(TWIN_CODES)} sets of identical twins: the rest are written as not twins")
    if any(not t.monozygotic for t in ped.twins):
        warn("dizygotic twins are written as ordinary siblings (CanRisk marks identical twins only)")

    consultands = [pid for pid, ind in people.items() if ind.consultand and pid not in left_out]
    target = consultands[0] if len(consultands) == 1 else next((p for p, i in people.items() if i.proband), None)
    family = re.sub(r"\s", "", ped.family_id)[:MAX_FAMILY] or "FAM1"
    lines = [HEADER, "##" + "\t".join(COLUMNS)]
    lost_genes: set[str] = set()
    tested = False
    for pid, ind in people.items():
        if pid in left_out:
            continue
        parents = ped.parents_index().get(pid)
        father = mother = "0"
        if parents is not None:
            father, mother = (parents.a, parents.b) if sex[parents.a] == "M" else (parents.b, parents.a)
            father, mother = ids[father], ids[mother]
        row = [family, ids[pid][:MAX_NAME], "1" if pid == target else "0", ids[pid], father, mother, sex[pid],
               twin_code.get(pid, "0"), "1" if ind.deceased else "0", str(ind.age or 0), str(ind.birth_year or 0)]
        affected = {cancers[c] for c, s in ind.conditions.items() if s == "affected" and c in cancers}
        row += ["AU" if column in affected else "0" for column in CANCERS]
        row.append("0")  # Ashkenazi ancestry: not recorded
        tests = {}
        for g in ind.genotypes:
            gene, result = g.gene.strip().upper(), g.result.strip().lower()
            if gene not in GENES:
                lost_genes.add(g.gene)
            elif result in POSITIVE:
                tests[gene] = "T:P"
            elif result in NEGATIVE:
                tests.setdefault(gene, "T:N")
            else:
                warn(f"{ids[pid]}: {gene} result {g.result or '(none)'!r} is written as untested")
        tested = tested or bool(tests)
        row += [tests.get(gene, "0:0") for gene in GENES]
        row.append("0:0:0:0:0")  # tumour pathology (ER, PR, HER2, CK14, CK5/6): not recorded
        lines.append("\t".join(row))
    if tested:
        warn("genetic tests are written as direct tests (T): the model does not record a full search (S)")
    if lost_genes:
        warn(f"genotypes of genes CanRisk does not model, left out: {', '.join(sorted(lost_genes))}")
    lost = [("carrier or presymptomatic statuses", any(s in ("carrier", "presymptomatic")
                                                       for i in people.values() for s in i.conditions.values())),
            ("adoptions", any(i.adopted for i in people.values())),
            ("notes", any(i.note for i in people.values())),
            ("gender identities", any(i.gender_identity for i in people.values()))]
    for what, present in lost:
        if present:
            warn(f"{what} are not part of the format")
    if not any(i.age or i.birth_year for i in people.values()):
        warn("no ages or years of birth (CanRisk's risks depend on them)")
    warn("Ashkenazi ancestry and tumour pathology are not recorded: written as 0")
    return "\n".join(lines) + "\n", warnings
