"""Generated families of a given size, for the benchmark and the layout's scale tests.

Realistic in shape: a founder couple, sibships of 1-5 in birth order, married-in partners (some
with their own parents drawn), a few second partners (half-siblings), twins, a first-cousin
marriage with children (a consanguineous loop), and an autosomal-dominant condition.
"""

from __future__ import annotations

import random

from plugins.pedigree.model import Pedigree


def generate(n: int, seed: int = 1) -> Pedigree:
    rng = random.Random(seed)
    ped = Pedigree(family_id=f"SYN{n}")
    ped.condition("C1", "Synthetic dominant condition")
    ped.condition("C2", "Synthetic second condition")
    counter = [0]

    def new(sex: str, year: int, affected: bool = False) -> str:
        counter[0] += 1
        pid = f"i{counter[0]}"
        status = {"C1": "affected" if affected else rng.choice(["unaffected", "unknown", "carrier"])}
        if rng.random() < 0.05:
            status["C2"] = "affected"
        ped.person(pid, sex, birth_year=year, deceased=year < 1940, conditions=status)
        return pid

    def full() -> bool:
        return counter[0] >= n

    couples = [(new("male", 1900, True), new("female", 1902), 1900)]
    loop_done = False
    while couples and not full():
        next_couples = []
        sibships = []
        for a, b, year in couples:
            kids = []
            count = min(1 + int(rng.expovariate(0.55)), 5)
            p = ped.partner(a, b)
            for k in range(count):
                if full():
                    break
                child_year = year + 22 + 2 * k + rng.randint(0, 3)
                sex = rng.choice(["male", "female"])
                affected = ped.individuals[a].conditions.get("C1") == "affected" and rng.random() < 0.5
                kid = new(sex, child_year, affected)
                p.children.append(kid)
                kids.append(kid)
            if len(kids) >= 2 and rng.random() < 0.08:
                ped.add_twins(kids[:2], monozygotic=False)
            sibships.append(kids)
            for kid in kids:
                if full() or rng.random() > 0.65:
                    continue
                kid_year = ped.individuals[kid].birth_year
                other = "female" if ped.individuals[kid].sex == "male" else "male"
                spouse = new(other, kid_year + rng.randint(-3, 3))
                if rng.random() < 0.12 and counter[0] + 2 <= n:  # the spouse's parents are drawn too
                    sp = ped.partner(new("male", kid_year - 28), new("female", kid_year - 26))
                    sp.children.append(spouse)
                pair = (kid, spouse) if ped.individuals[kid].sex == "male" else (spouse, kid)
                ped.partner(*pair)
                next_couples.append((*pair, kid_year))
                if rng.random() < 0.06 and not full():  # a second partner: half-siblings
                    second = new(other, kid_year + 2)
                    pair = (kid, second) if ped.individuals[kid].sex == "male" else (second, kid)
                    ped.partner(*pair)
                    next_couples.append((*pair, kid_year + 4))
        if not loop_done and len(sibships) >= 2:
            # first cousins marry: a son of one sibling and a daughter of another
            cousins = [(k, s) for s in sibships for k in s if ped.individuals[k].sex == "male"]
            for son, sibs in cousins:
                match = next((k for s in sibships if s is not sibs for k in s
                              if ped.individuals[k].sex == "female"), None)
                if match and counter[0] + 1 <= n:
                    loop = ped.partner(son, match, consanguineous=True)
                    loop.children.append(new("female", ped.individuals[son].birth_year + 25))
                    next_couples.append((son, match, ped.individuals[son].birth_year))
                    loop_done = True
                    break
        if not next_couples and not full():  # keep the family going until it has n people
            kid = next(k for s in reversed(sibships) for k in s)
            other = "female" if ped.individuals[kid].sex == "male" else "male"
            spouse = new(other, ped.individuals[kid].birth_year)
            pair = (kid, spouse) if other == "female" else (spouse, kid)
            ped.partner(*pair)
            next_couples.append((*pair, ped.individuals[kid].birth_year))
        couples = next_couples
    return ped
