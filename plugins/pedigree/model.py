"""The pedigree model: individuals, partnerships (which carry their children), twins, conditions.

Relatives carry no names: an individual has an opaque ``id`` and, once laid out, a
generation/number label (``I-1``, ``II-3``) from :func:`assign_labels`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal

SEXES = ("male", "female", "unknown")
STATUSES = ("affected", "carrier", "presymptomatic", "unaffected", "unknown")
ADOPTED = ("in", "out")
PREGNANCY_KINDS = ("pregnancy", "miscarriage", "stillbirth", "termination")
MIN_PARENT_AGE = 10  # years: below this at a child's birth, the birth years are surely wrong

Sex = Literal["male", "female", "unknown"]


class PedigreeError(ValueError):
    """Invalid pedigree (or PED file): ``problems`` lists every problem found, one sentence each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) if self.problems else "invalid pedigree")


@dataclass
class Condition:
    id: str
    label: str
    system: str | None = None  # e.g. "ORPHA", "HPO", "OMIM" (the coding plugin's systems)
    code: str | None = None
    colour: str | None = None  # CSS colour of its segment; None: the pattern's default
    pattern: int | None = None  # index into the renderer's fill patterns; None: the condition's position


@dataclass
class Genotype:
    gene: str
    variant: str = ""  # HGVS, e.g. "NM_007294.4:c.68_69del"
    zygosity: str = ""  # heterozygous, homozygous, hemizygous, compound heterozygous, mosaic
    result: str = ""  # pathogenic, likely pathogenic, VUS, negative ...
    date: str = ""  # ISO date of the result


@dataclass
class Individual:
    id: str
    sex: Sex = "unknown"  # sex assigned at birth
    gender_identity: str | None = None  # "man", "woman", "non-binary" ...: the symbol follows it (NSGC 2022)
    deceased: bool = False
    age: int | None = None  # current age, or age at death when deceased
    birth_year: int | None = None
    death_year: int | None = None
    proband: bool = False
    consultand: bool = False
    conditions: dict[str, str] = field(default_factory=dict)  # condition id -> one of STATUSES
    tested: bool = False  # documented evaluation
    adopted: str | None = None  # "in" (adopted into the family), "out" (given up), None
    pregnancy: str | None = None  # None (a born person) or one of PREGNANCY_KINDS
    infertility: bool = False
    no_children_by_choice: bool = False
    note: str = ""
    genotypes: list[Genotype] = field(default_factory=list)
    order: int | None = None  # birth order among siblings; birth year when absent

    def status(self, condition_id: str) -> str:
        return self.conditions.get(condition_id, "unknown")


@dataclass
class Partnership:
    a: str
    b: str
    consanguineous: bool = False
    separated: bool = False
    children: list[str] = field(default_factory=list)

    @property
    def pair(self) -> tuple[str, str]:
        return (self.a, self.b)


@dataclass
class Twins:
    ids: list[str]
    monozygotic: bool = False


@dataclass
class Pedigree:
    individuals: dict[str, Individual] = field(default_factory=dict)
    partnerships: list[Partnership] = field(default_factory=list)
    twins: list[Twins] = field(default_factory=list)
    conditions: dict[str, Condition] = field(default_factory=dict)
    family_id: str = "FAM1"

    # --- building ---------------------------------------------------------------------------

    def add(self, individual: Individual) -> Individual:
        if individual.id in self.individuals:
            raise PedigreeError([f"duplicate individual id {individual.id!r}"])
        self.individuals[individual.id] = individual
        return individual

    def person(self, id: str, sex: Sex = "unknown", **fields) -> Individual:
        return self.add(Individual(id=id, sex=sex, **fields))

    def condition(self, id: str, label: str, **fields) -> Condition:
        self.conditions[id] = Condition(id=id, label=label, **fields)
        return self.conditions[id]

    def partner(self, a: str, b: str, *, children: Iterable[str] = (), **fields) -> Partnership:
        """The partnership of ``a`` and ``b`` (created when new), with ``children`` added to it."""
        found = self.partnership_of(a, b)
        if found is None:
            found = Partnership(a, b, **fields)
            self.partnerships.append(found)
        else:
            for key, value in fields.items():
                setattr(found, key, value)
        for child in children:
            if child not in found.children:
                found.children.append(child)
        return found

    def add_twins(self, ids: Iterable[str], monozygotic: bool = False) -> Twins:
        group = Twins(list(ids), monozygotic)
        self.twins.append(group)
        return group

    # --- reading ----------------------------------------------------------------------------

    def partnership_of(self, a: str, b: str) -> Partnership | None:
        for p in self.partnerships:
            if {p.a, p.b} == {a, b}:
                return p
        return None

    def parents_index(self) -> dict[str, Partnership]:
        """child id -> the partnership they descend from (the first one, if wrongly several)."""
        out: dict[str, Partnership] = {}
        for p in self.partnerships:
            for c in p.children:
                out.setdefault(c, p)
        return out

    def parents_of(self, child: str) -> tuple[str, str] | None:
        """(father, mother) when the sexes tell them apart, else (parent1, parent2); None for a founder."""
        p = self.parents_index().get(child)
        if p is None:
            return None
        a, b = self.individuals.get(p.a), self.individuals.get(p.b)
        if a and b and a.sex == "female" and b.sex != "female":
            return (p.b, p.a)
        return (p.a, p.b)


# --- validation ----------------------------------------------------------------------------


def validate(pedigree: Pedigree) -> None:
    """Raise :class:`PedigreeError` listing every problem; return None when the pedigree is sound."""
    problems: list[str] = []
    people = pedigree.individuals
    for key, ind in people.items():
        if key != ind.id:
            problems.append(f"individual stored under {key!r} has id {ind.id!r}")
        if ind.sex not in SEXES:
            problems.append(f"{ind.id}: sex {ind.sex!r} is not one of {', '.join(SEXES)}")
        if ind.adopted not in (None, *ADOPTED):
            problems.append(f"{ind.id}: adopted {ind.adopted!r} is not 'in', 'out' or empty")
        if ind.pregnancy not in (None, *PREGNANCY_KINDS):
            problems.append(f"{ind.id}: pregnancy {ind.pregnancy!r} is not one of {', '.join(PREGNANCY_KINDS)}")
        for cid, status in ind.conditions.items():
            if cid not in pedigree.conditions:
                problems.append(f"{ind.id}: unknown condition {cid!r}")
            if status not in STATUSES:
                problems.append(f"{ind.id}: status {status!r} for {cid!r} is not one of {', '.join(STATUSES)}")
        if ind.birth_year is not None and ind.death_year is not None and ind.death_year < ind.birth_year:
            problems.append(f"{ind.id}: died ({ind.death_year}) before being born ({ind.birth_year})")

    parents: dict[str, list[Partnership]] = {}
    for p in pedigree.partnerships:
        for who in (p.a, p.b):
            if who not in people:
                problems.append(f"partnership {p.a}+{p.b}: unknown individual {who!r}")
        if p.a == p.b:
            problems.append(f"{p.a} is partnered with themselves")
        for c in p.children:
            if c not in people:
                problems.append(f"partnership {p.a}+{p.b}: unknown child {c!r}")
            parents.setdefault(c, []).append(p)
    for child, ps in parents.items():
        if len(ps) > 1:
            named = sorted({x for p in ps for x in p.pair})
            problems.append(f"{child} has more than two parents ({', '.join(named)})")

    problems += _cycles(pedigree)

    for child, ps in parents.items():
        kid = people.get(child)
        if kid is None or kid.birth_year is None:
            continue
        for parent_id in ps[0].pair:
            parent = people.get(parent_id)
            if parent is None or parent.birth_year is None:
                continue
            gap = kid.birth_year - parent.birth_year
            if gap < 0:
                problems.append(f"{child} (born {kid.birth_year}) is older than their parent {parent_id} (born {parent.birth_year})")
            elif gap < MIN_PARENT_AGE:
                problems.append(f"{parent_id} (born {parent.birth_year}) was {gap} at the birth of {child} "
                                f"({kid.birth_year}): a parent must be at least {MIN_PARENT_AGE}")

    for group in pedigree.twins:
        label = "+".join(group.ids)
        if len(group.ids) < 2:
            problems.append(f"twin group {label} has fewer than two members")
        unknown = [i for i in group.ids if i not in people]
        if unknown:
            problems.append(f"twin group {label}: unknown individual(s) {', '.join(unknown)}")
            continue
        origins = {id(parents[i][0]) if i in parents else None for i in group.ids}
        if len(origins) > 1 or None in origins:
            problems.append(f"twins {label} do not share the same parents")
        if group.monozygotic:
            sexes = {people[i].sex for i in group.ids} - {"unknown"}
            if len(sexes) > 1:
                problems.append(f"monozygotic twins {label} have different sexes")
    if problems:
        raise PedigreeError(problems)


def _cycles(pedigree: Pedigree) -> list[str]:
    """Someone who is their own ancestor, found by an iterative depth-first walk down the generations."""
    kids: dict[str, list[str]] = {}
    for p in pedigree.partnerships:
        for parent in p.pair:
            kids.setdefault(parent, []).extend(p.children)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    problems: list[str] = []
    for start in kids:
        if state.get(start):
            continue
        path, stack = [start], [iter(kids.get(start, ()))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                loop = path[path.index(nxt):] + [nxt]
                problems.append(f"{nxt} is their own ancestor ({' → '.join(loop)})")
                if len(problems) >= 5:  # one bad link repeats; a few are enough to find it
                    return problems
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(kids.get(nxt, ())))
    return problems


# --- labels --------------------------------------------------------------------------------


def roman(n: int) -> str:
    out = ""
    for value, letters in ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                           (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while n >= value:
            out += letters
            n -= value
    return out


def assign_labels(layout) -> dict[str, str]:
    """id -> "II-3": generation numeral (from the top), then the position left to right within it."""
    rows: dict[int, list[tuple[float, str]]] = {}
    for pid, gen in layout.generation.items():
        rows.setdefault(gen, []).append((layout.x[pid], pid))
    labels = {}
    for gen, row in rows.items():
        for number, (_, pid) in enumerate(sorted(row), start=1):
            labels[pid] = f"{roman(gen + 1)}-{number}"
    return labels
