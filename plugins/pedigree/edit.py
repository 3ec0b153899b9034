"""Editing operations of the web editor, on a copy of the model: one click = one function.

Each function changes the pedigree it is given and returns a short description of the change (for
the version history). The caller works on a copy, validates the result, and stores it only when
everything succeeded, so a refused change leaves nothing behind. Refusals raise
:class:`PedigreeError` with a sentence the user can act on.
"""

from __future__ import annotations

import copy

from plugins.pedigree.model import SEXES, Individual, Partnership, Pedigree, PedigreeError, Twins

OPPOSITE = {"male": "female", "female": "male", "unknown": "unknown"}
ADD_KINDS = ("parents", "sibling", "child", "partner", "twin")


def new_proband(sex: str) -> Pedigree:
    """The pedigree every patient starts from: the patient alone, as proband (core sexes other/unknown -> unknown)."""
    ped = Pedigree(family_id="FAM1")
    ped.person("i1", sex if sex in ("male", "female") else "unknown", proband=True)
    return ped


def clone(ped: Pedigree) -> Pedigree:
    return copy.deepcopy(ped)


def rekey(ped: Pedigree) -> Pedigree:
    """A copy whose people are i1, i2 ... in their order (ids from an imported file may be names)."""
    new_id = {old: f"i{n}" for n, old in enumerate(ped.individuals, start=1)}
    out = clone(ped)
    out.individuals = {new_id[k]: v for k, v in out.individuals.items()}
    for k, v in out.individuals.items():
        v.id = k
    for p in out.partnerships:
        p.a, p.b, p.children = new_id[p.a], new_id[p.b], [new_id[c] for c in p.children]
    for t in out.twins:
        t.ids = [new_id[x] for x in t.ids]
    out.family_id = "FAM1"
    return out


def _next_id(ped: Pedigree) -> str:
    n = len(ped.individuals) + 1
    while f"i{n}" in ped.individuals:
        n += 1
    return f"i{n}"


def _new(ped: Pedigree, sex: str) -> Individual:
    if sex not in SEXES:
        raise PedigreeError([f"sex {sex!r} is not one of {', '.join(SEXES)}"])
    return ped.person(_next_id(ped), sex)


def _get(ped: Pedigree, iid: str) -> Individual:
    if iid not in ped.individuals:
        raise PedigreeError(["This person is not in the pedigree (it may have changed; reload)."])
    return ped.individuals[iid]


def _partnerships_of(ped: Pedigree, iid: str) -> list[Partnership]:
    return [p for p in ped.partnerships if iid in p.pair]


def add_parents(ped: Pedigree, iid: str) -> str:
    _get(ped, iid)
    if iid in ped.parents_index():
        raise PedigreeError(["This person already has parents."])
    father, mother = _new(ped, "male"), _new(ped, "female")
    ped.partner(father.id, mother.id, children=[iid])
    return "add parents"


def _parents(ped: Pedigree, iid: str) -> Partnership:
    """The partnership ``iid`` descends from, creating the parents when there are none yet
    (a sibling or twin needs them, and the user would otherwise need two clicks)."""
    found = ped.parents_index().get(iid)
    if found is None:
        add_parents(ped, iid)
        found = ped.parents_index()[iid]
    return found


def _place_after(children: list[str], anchor: str, new: str) -> None:
    children.remove(new)
    children.insert(children.index(anchor) + 1, new)


def add_sibling(ped: Pedigree, iid: str, sex: str = "unknown") -> str:
    _get(ped, iid)
    parents = _parents(ped, iid)
    sib = _new(ped, sex)
    parents.children.append(sib.id)
    return "add sibling"


def add_twin(ped: Pedigree, iid: str, sex: str | None = None, monozygotic: bool = False) -> str:
    person = _get(ped, iid)
    if monozygotic:
        sex = person.sex  # identical twins share the sex assigned at birth
    parents = _parents(ped, iid)
    twin = _new(ped, sex or "unknown")
    twin.birth_year, twin.order = person.birth_year, person.order
    parents.children.append(twin.id)
    _place_after(parents.children, iid, twin.id)
    group = next((g for g in ped.twins if iid in g.ids), None)
    if group is None:
        ped.twins.append(Twins([iid, twin.id], monozygotic))
    else:
        if group.monozygotic != monozygotic:
            raise PedigreeError(["A twin added to a group must be of the same kind (monozygotic or not) as the group."])
        group.ids.append(twin.id)
    return "add monozygotic twin" if monozygotic else "add twin"


def add_partner(ped: Pedigree, iid: str, sex: str | None = None) -> str:
    person = _get(ped, iid)
    partner = _new(ped, sex or OPPOSITE[person.sex])
    ped.partner(iid, partner.id)
    return "add partner"


def add_child(ped: Pedigree, iid: str, sex: str = "unknown", partner: str | None = None) -> str:
    """A child of ``iid`` with ``partner`` (default: their newest partnership; a new partner when none)."""
    _get(ped, iid)
    if partner:
        _get(ped, partner)
        found = ped.partnership_of(iid, partner)
        if found is None:
            raise PedigreeError(["These two people are not partners."])
    else:
        mine = _partnerships_of(ped, iid)
        if mine:
            found = mine[-1]
        else:
            add_partner(ped, iid)
            found = _partnerships_of(ped, iid)[-1]
    child = _new(ped, sex)
    found.children.append(child.id)
    return "add child"


def add(ped: Pedigree, kind: str, iid: str, sex: str | None = None, monozygotic: bool = False,
        partner: str | None = None) -> str:
    if kind == "parents":
        return add_parents(ped, iid)
    if kind == "sibling":
        return add_sibling(ped, iid, sex or "unknown")
    if kind == "child":
        return add_child(ped, iid, sex or "unknown", partner)
    if kind == "partner":
        return add_partner(ped, iid, sex)
    if kind == "twin":
        return add_twin(ped, iid, sex, monozygotic)
    raise PedigreeError([f"Unknown addition {kind!r}: one of {', '.join(ADD_KINDS)}."])


# --- deleting ------------------------------------------------------------------------------


def _components(ped: Pedigree) -> list[set[str]]:
    """People linked by partnerships and descent, as connected groups (siblings link through their parents)."""
    link: dict[str, set[str]] = {i: set() for i in ped.individuals}
    for p in ped.partnerships:
        group = [x for x in (p.a, p.b, *p.children) if x in link]
        for x in group:
            link[x].update(group)
    seen: set[str] = set()
    out = []
    for start in ped.individuals:
        if start in seen:
            continue
        comp, stack = set(), [start]
        while stack:
            x = stack.pop()
            if x in comp:
                continue
            comp.add(x)
            stack.extend(link[x] - comp)
        seen |= comp
        out.append(comp)
    return out


def delete(ped: Pedigree, iid: str, labels: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Remove ``iid``; returns (description, ids removed). Refused for the proband, and when the
    removal would cut anyone off from the proband's family, except a partner left with nobody at
    all (a married-in partner of the deleted person alone), who goes too."""
    person = _get(ped, iid)
    name = (labels or {}).get(iid, iid)
    if person.proband:
        raise PedigreeError(["The proband cannot be deleted."])
    proband = next((i for i, x in ped.individuals.items() if x.proband), None)
    partners = {x for p in _partnerships_of(ped, iid) for x in p.pair} - {iid}
    del ped.individuals[iid]
    for p in list(ped.partnerships):
        if iid in p.pair:
            ped.partnerships.remove(p)
        elif iid in p.children:
            p.children.remove(iid)
    for g in list(ped.twins):
        if iid in g.ids:
            g.ids.remove(iid)
            if len(g.ids) < 2:
                ped.twins.remove(g)
    removed = [iid]
    for comp in _components(ped):
        if proband in comp:
            continue
        if len(comp) == 1 and comp <= partners:  # a partner left alone: the deleted person was their only link
            lone = comp.pop()
            del ped.individuals[lone]
            removed.append(lone)
            continue
        cut = ", ".join(sorted((labels or {}).get(x, x) for x in comp))
        raise PedigreeError([f"Deleting {name} would cut {cut} off from the rest of the family: "
                             f"delete them first (or undo the change that added them)."])
    return ("delete", removed)
