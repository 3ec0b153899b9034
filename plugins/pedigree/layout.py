"""Pedigree layout: generation levels, a left-to-right order per generation, x positions, lines.

1. Levels. Partners are merged into "units" (union-find), so married-in partners share a level.
   Units form a DAG (parent unit -> child unit); a top-down longest path gives each unit
   1 + its deepest parent unit, then a bottom-up pass pulls founder units down to just above
   their shallowest child, so a married-in spouse's parents sit one row above the spouse.
2. Order. A breadth-first walk over units from the proband's paternal top ancestor chooses a
   spanning tree (breadth first, so a consanguineous loop is closed by the latest link, not the
   first), then a depth-first walk appends people to their rows. Subtrees are contiguous in every
   row, which is what keeps a tree-shaped pedigree free of crossings; a child whose subtree reaches
   sideways (a spouse with a family of their own, or a loop link) moves to that end of the sibship,
   so its spouse and the spouse's family sit next to it. Siblings are otherwise in birth order,
   twins together.
3. Positions. Per row, alternating downward sweeps (centre each sibship under its parents) and
   upward sweeps (centre parents over their children), each solved exactly as a least-squares
   problem with order and minimum spacing (pool-adjacent-violators, O(n) per row): symbols never
   overlap and the order from step 2 is kept. The last sweep is upward: where a crowded row cannot
   centre every sibship, parents over their children keeps neighbouring sibship lines apart.
Everything is O(n) to O(n log n) (the sorts).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from plugins.pedigree.model import Pedigree, Partnership

SYMBOL = 1.0  # symbol width and height, in layout units
HALF = SYMBOL / 2
CLOSE = 2.0  # centre-to-centre spacing of partners and siblings
APART = 3.0  # spacing between people of different families in a row
ROW = 5.0  # distance between generations (room for the labels under a symbol)
SIB_DROP = 1.6  # the sibship line lies this far above the children's centres
ROUTE = 0.9  # a partnership line around someone in between rises this far above the centres
CONSANGUINITY_GAP = 0.12  # half the distance between the two lines of a consanguineous partnership
SWEEPS = 6
FINAL_UP = True  # end centring parents over children: crowded lower rows then keep sibships apart
LINE_KINDS = ("partnership", "consanguinity", "descent", "sibship", "child", "twin")


@dataclass
class Segment:
    kind: str  # partnership, consanguinity, separation, descent, sibship, child, twin, mz-bar, infertility, no-children
    x1: float
    y1: float
    x2: float
    y2: float
    ref: str = ""  # the partnership ("a+b") or the individual the line belongs to
    dashed: bool = False  # adopted in: the line of descent from the adoptive parents


@dataclass
class Layout:
    x: dict[str, float]
    y: dict[str, float]
    generation: dict[str, int]
    rows: dict[int, list[str]]  # generation -> ids left to right
    segments: list[Segment] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0


def layout(pedigree: Pedigree) -> Layout:
    return _Layouter(pedigree).run()


class _Layouter:
    def __init__(self, ped: Pedigree):
        self.ped = ped
        self.people = list(ped.individuals)
        self.index = {pid: i for i, pid in enumerate(self.people)}
        self.parents: dict[str, Partnership] = ped.parents_index()
        self.partnerships_of: dict[str, list[Partnership]] = {pid: [] for pid in self.people}
        for p in ped.partnerships:
            self.partnerships_of[p.a].append(p)
            self.partnerships_of[p.b].append(p)
        self.twin_of: dict[str, tuple] = {}
        for group in ped.twins:
            for pid in group.ids:
                self.twin_of[pid] = tuple(group.ids)

    # --- 1. units and levels -----------------------------------------------------------------

    def _units(self, merge) -> None:
        root = {pid: pid for pid in self.people}

        def find(x):
            while root[x] != x:
                root[x] = root[root[x]]
                x = root[x]
            return x

        for p in self.ped.partnerships:
            if merge(p):
                ra, rb = find(p.a), find(p.b)
                if ra != rb:
                    root[max(ra, rb, key=self.index.get)] = min(ra, rb, key=self.index.get)
        self.unit = {pid: find(pid) for pid in self.people}
        self.members: dict[str, list[str]] = {}
        for pid in self.people:
            self.members.setdefault(self.unit[pid], []).append(pid)
        # a partnership belongs to its first partner's unit (the same as the second's when merged)
        self.owner = {id(p): self.unit[p.a] for p in self.ped.partnerships}
        self.owned: dict[str, list[Partnership]] = {u: [] for u in self.members}
        for p in self.ped.partnerships:
            self.owned[self.owner[id(p)]].append(p)

    def _levels(self) -> bool:
        down: dict[str, set] = {u: set() for u in self.members}
        indeg = dict.fromkeys(self.members, 0)
        for p in self.ped.partnerships:
            u = self.owner[id(p)]
            for c in p.children:
                v = self.unit[c]
                if v not in down[u]:
                    down[u].add(v)
                    indeg[v] += 1
        queue = deque(u for u in self.members if indeg[u] == 0)
        topo = []
        while queue:
            u = queue.popleft()
            topo.append(u)
            for v in down[u]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    queue.append(v)
        if len(topo) < len(self.members):
            return False  # merging partners made a loop (a partnership across generations)
        level = dict.fromkeys(self.members, 0)
        for u in topo:
            for v in down[u]:
                level[v] = max(level[v], level[u] + 1)
        for u in reversed(topo):  # founders sink to just above their shallowest child
            if down[u]:
                level[u] = max(level[u], min(level[v] for v in down[u]) - 1)
        low = min(level.values(), default=0)
        self.level = {pid: level[self.unit[pid]] - low for pid in self.people}
        return True

    # --- 2. order -------------------------------------------------------------------------------

    def _owner_of_parents(self, pid):
        p = self.parents.get(pid)
        return None if p is None else self.owner[id(p)]

    def _claim(self, root: str) -> None:
        """Breadth-first spanning tree over units; the parent link of a child is a tree link or not."""
        self.claimed[root] = None
        queue = deque([root])
        order = []
        while queue:
            u = queue.popleft()
            order.append(u)
            self.tree[u] = []
            for p in self.owned[u]:
                for c in p.children:
                    v = self.unit[c]
                    if v not in self.claimed:
                        self.claimed[v] = c
                        self.tree_links.add(c)
                        self.tree[u].append(v)
                        queue.append(v)
            for m in self.members[u]:
                w = self._owner_of_parents(m)
                if w is not None and w not in self.claimed:
                    self.claimed[w] = m
                    self.tree_links.add(m)
                    self.tree[u].append(w)
                    queue.append(w)
        # pre/post numbers: "is T inside the subtree of U" in O(1)
        stack = [(root, 0)]
        while stack:
            u, i = stack.pop()
            if i == 0:
                self.pre[u] = self.clock
                self.clock += 1
            if i < len(self.tree[u]):
                stack.append((u, i + 1))
                stack.append((self.tree[u][i], 0))
            else:
                self.post[u] = self.clock
                self.clock += 1
        units = set(order)
        nt: dict[str, list[str]] = {u: [] for u in order}
        for u in order:
            for m in self.members[u]:
                w = self._owner_of_parents(m)
                if w is not None and m not in self.tree_links and w in units:
                    nt[u].append(w)
                    nt[w].append(u)
        for u in reversed(order):  # children before parents in BFS order reversed
            inside = lambda t, u=u: self.pre[u] <= self.pre[t] and self.post[t] <= self.post[u]
            reach = [t for t in nt[u] if not inside(t)]
            has_up = False
            for v in self.tree[u]:
                reach += [t for t in self.reach[v] if not inside(t)]
                link = self.claimed[v]
                has_up = has_up or self.unit[link] == u or self.has_up[v]  # an up link, or one below
            self.reach[u] = reach
            self.has_up[u] = has_up

    def _inside(self, t: str, u: str) -> bool:
        return u in self.pre and t in self.pre and self.pre[u] <= self.pre[t] and self.post[t] <= self.post[u]

    def _pull(self, v: str, rank: int, n: int) -> str | None:
        """Which end of its sibship the subtree of unit ``v`` should go to."""
        if self.reach[v]:
            return "left" if all(t in self.emitted for t in self.reach[v]) else "right"
        if self.has_up[v]:
            return "left" if rank < (n - 1) / 2 else "right"
        return None

    def _birth_sorted(self, kids: list[str]) -> list[str]:
        inds = self.ped.individuals
        big = 10**9
        return sorted(kids, key=lambda c: (inds[c].order if inds[c].order is not None else big,
                                           inds[c].birth_year if inds[c].birth_year is not None else big,
                                           self.index[c]))

    def _sibship(self, p: Partnership, exclude: str | None, force: str | None) -> list[tuple[str, str | None]]:
        """The children of ``p`` still to place, in drawing order, each with its subtree's side."""
        kids = self._birth_sorted(p.children)
        n = len(kids)
        mine = {c: self.unit[c] for c in kids if self.claimed.get(self.unit[c]) == c and self.unit[c] not in self.emitted}
        left, middle, right = [], [], []
        link: dict[str, str] = {}
        for rank, c in enumerate(kids):
            if c == exclude or c in self.placed:
                continue
            side = None
            v = mine.get(c)
            if v is not None:
                # a loop closed between two siblings' subtrees (cousins marrying): keep those siblings
                # side by side in the middle rather than sending both to one end
                others = [(d, w) for d, w in mine.items() if d != c]
                inner = {d for t in self.reach[v] for d, w in others if self._inside(t, w)}
                if self.reach[v] and len(inner) == 1 and all(any(self._inside(t, w) for _, w in others) for t in self.reach[v]):
                    link[c] = inner.pop()
                else:
                    side = force if (force and (self.reach[v] or self.has_up[v])) else self._pull(v, rank, n)
            {"left": left, None: middle, "right": right}[side].append((c, side))
        for c, d in link.items():
            i = next((k for k, (e, _) in enumerate(middle) if e == c), None)
            j = next((k for k, (e, _) in enumerate(middle) if e == d), None)
            if i is not None and j is not None and j > i + 1:
                middle.insert(i + 1, middle.pop(j))
        out = left + middle + right
        # twins side by side, at the place of the first of them
        if self.twin_of:
            seen, regrouped = set(), []
            where = {c: i for i, (c, _) in enumerate(out)}
            for c, side in out:
                if c in seen:
                    continue
                group = [g for g in self.twin_of.get(c, (c,)) if g in where] or [c]
                for g in sorted(group, key=where.get):
                    if g not in seen:
                        seen.add(g)
                        regrouped.append(out[where[g]])
            out = regrouped
        return out

    def _arrange(self, u: str, anchor: str | None, anchor_end: str | None) -> list[str]:
        """Members of a unit left to right, partners next to each other as far as possible."""
        members = self.members[u]
        if len(members) == 1:
            return list(members)
        adj: dict[str, list[str]] = {m: [] for m in members}
        for p in self.owned[u]:
            if p.a in adj and p.b in adj:
                adj[p.a].append(p.b)
                adj[p.b].append(p.a)
        ends = [m for m in members if len(adj[m]) <= 1]
        start = anchor if (anchor in adj and len(adj[anchor]) <= 1) else (ends[0] if ends else members[0])
        seq, seen, stack = [], set(), [start]
        while stack:  # depth-first preorder: a path comes out in path order, a star centre-adjacent
            m = stack.pop()
            if m in seen:
                continue
            seen.add(m)
            seq.append(m)
            stack.extend(reversed(adj[m]))
        seq += [m for m in members if m not in seen]
        if anchor is not None and anchor_end is not None:
            i = seq.index(anchor)
            if (anchor_end == "left") != (i <= (len(seq) - 1) / 2):
                seq.reverse()
        elif len(seq) == 2:
            inds = self.ped.individuals
            if inds[seq[0]].sex == "female" and inds[seq[1]].sex == "male":
                seq.reverse()  # the usual drawing: the man on the left
        return seq

    def _append(self, pids: list[str]) -> None:
        for pid in pids:
            self.rows.setdefault(self.level[pid], []).append(pid)
            self.placed.add(pid)

    def _down_children(self, u: str, seq: list[str], skip: Partnership | None = None, exclude=None, force=None):
        pos = {m: i for i, m in enumerate(seq)}
        owned = sorted(self.owned[u], key=lambda p: pos.get(p.a, 0) + pos.get(p.b, 0))
        for p in owned:
            if p is skip:
                continue
            self._emit_children(p, exclude, force)

    def _emit_children(self, p: Partnership, exclude=None, force=None) -> None:
        for c, side in self._sibship(p, exclude, force):
            v = self.unit[c]
            if self.claimed.get(v) == c and v not in self.emitted:
                self._from_above(v, c, side)
            # otherwise c's unit hangs from another link (a loop): placed when the walk gets there

    def _from_above(self, u: str, entry: str | None, side: str | None) -> None:
        """Unit ``u`` hangs from its entry member's parents; its own up-branches go to ``side``."""
        self.emitted.add(u)
        end = {"right": "left", "left": "right"}.get(side) if entry else None
        seq = self._arrange(u, entry, end)
        pos = {m: i for i, m in enumerate(seq)}
        anchor_pos = pos.get(entry, (len(seq) - 1) / 2)
        branches = {"left": [], "right": []}
        for m in seq:
            w = self._owner_of_parents(m)
            if m != entry and w is not None and self.claimed.get(w) == m and w not in self.emitted:
                branches[side or ("left" if pos[m] < anchor_pos else "right")].append((w, m))
        for w, m in branches["left"]:
            self._from_below(w, m, "left")
        self._append(seq)
        self._down_children(u, seq, force=side)
        for w, m in branches["right"]:
            self._from_below(w, m, "right")

    def _from_below(self, w: str, child: str, side: str) -> None:
        """Unit ``w`` holds the parents of ``child`` (placed, or about to be, on w's other side)."""
        self.emitted.add(w)
        p = self.parents[child]
        seq = self._arrange(w, None, None)
        mid = (seq.index(p.a) + seq.index(p.b)) / 2 if p.a in seq and p.b in seq else 0
        if (side == "left") != (mid >= (len(seq) - 1) / 2) and len(seq) > 2:
            seq.reverse()  # the parents' partnership at the end next to the child
        ups = []
        for m in seq:
            ww = self._owner_of_parents(m)
            if ww is not None and self.claimed.get(ww) == m and ww not in self.emitted:
                ups.append((ww, m))
        if side == "left":
            for ww, m in ups:
                self._from_below(ww, m, "left")
            self._append(seq)
            self._down_children(w, seq, skip=p, force="left")
            self._emit_children(p, exclude=child, force="left")
        else:
            self._append(seq)
            self._emit_children(p, exclude=child, force="right")
            self._down_children(w, seq, skip=p, force="right")
            for ww, m in reversed(ups):
                self._from_below(ww, m, "right")

    def _root(self, candidates: list[str]) -> str:
        inds = self.ped.individuals
        start = next((pid for pid in candidates if inds[pid].proband), candidates[0])
        u, seen = self.unit[start], set()
        while u not in seen:  # climb, preferring the father's line, to a unit of founders
            seen.add(u)
            up = [m for m in self.members[u] if self._owner_of_parents(m) is not None]
            if not up:
                break
            up.sort(key=lambda m: (inds[m].sex != "male", self.index[m]))
            u = self._owner_of_parents(up[0])
        return u

    def _order(self) -> None:
        self.claimed: dict[str, str | None] = {}
        self.tree: dict[str, list[str]] = {}
        self.tree_links: set[str] = set()
        self.pre: dict[str, int] = {}
        self.post: dict[str, int] = {}
        self.clock = 0
        self.reach: dict[str, list[str]] = {}
        self.has_up: dict[str, bool] = {}
        self.emitted: set[str] = set()
        self.placed: set[str] = set()
        self.rows: dict[int, list[str]] = {}
        pending = [pid for pid in self.people]
        while True:
            pending = [pid for pid in pending if self.unit[pid] not in self.claimed]
            if not pending:
                break
            root = self._root(pending)
            self._claim(root)
            self._from_above(root, None, None)
        leftover = [pid for pid in self.people if pid not in self.placed]
        self._append(leftover)  # never happens for a valid pedigree; keeps everyone drawn regardless

    # --- 3. positions ---------------------------------------------------------------------------

    def _positions(self) -> None:
        rows = [self.rows[g] for g in sorted(self.rows)]
        x: dict[str, float] = {}
        seps: list[list[float]] = []
        for row in rows:
            gaps, pos = [0.0], 0.0
            for i, pid in enumerate(row):
                if i:
                    gaps.append(self._gap(row[i - 1], pid))
                    pos += gaps[-1]
                x[pid] = pos
            seps.append(gaps)
        for sweep in range(2 * SWEEPS + (0 if FINAL_UP else 1)):
            downward = sweep % 2 == 0
            order = range(len(rows)) if downward else range(len(rows) - 1, -1, -1)
            for r in order:
                row = rows[r]
                target = self._targets_down(row, x) if downward else self._targets_up(row, x)
                for pid, value in zip(row, _pava([target[pid] for pid in row], seps[r])):
                    x[pid] = value
        low = min(x.values(), default=0.0)
        self.x = {pid: round(v - low, 4) for pid, v in x.items()}

    def _gap(self, a: str, b: str) -> float:
        if self.unit[a] == self.unit[b]:
            return CLOSE
        pa, pb = self.parents.get(a), self.parents.get(b)
        return CLOSE if pa is not None and pa is pb else APART

    def _centre(self, p: Partnership, x) -> float:
        xs = [x[c] for c in p.children]
        return (min(xs) + max(xs)) / 2

    def _targets_down(self, row, x) -> dict[str, float]:
        target, shift = {}, {}
        for pid in row:
            p = self.parents.get(pid)
            if p is not None:
                key = id(p)
                if key not in shift:
                    shift[key] = (x[p.a] + x[p.b]) / 2 - self._centre(p, x)
                target[pid] = x[pid] + shift[key]
        for pid in row:  # married-in partners follow their partner
            if pid not in target:
                mate = next((q for p in self.partnerships_of[pid] for q in p.pair if q != pid and q in target), None)
                target[pid] = x[pid] + (target[mate] - x[mate] if mate else 0.0)
        return target

    def _targets_up(self, row, x) -> dict[str, float]:
        target = {}
        for pid in row:
            shifts = [self._centre(p, x) - (x[p.a] + x[p.b]) / 2 for p in self.partnerships_of[pid] if p.children]
            if shifts:
                target[pid] = x[pid] + sum(shifts) / len(shifts)
        for pid in row:
            if pid not in target:
                mate = next((q for p in self.partnerships_of[pid] for q in p.pair if q != pid and q in target), None)
                target[pid] = x[pid] + (target[mate] - x[mate] if mate else 0.0)
        return target

    # --- lines ------------------------------------------------------------------------------------

    def _segments(self) -> list[Segment]:
        x, y = self.x, self.y
        segs: list[Segment] = []
        slot = {pid: i for row in self.rows.values() for i, pid in enumerate(row)}
        for p in self.ped.partnerships:
            a, b = sorted(p.pair, key=lambda q: x[q])
            ref = f"{p.a}+{p.b}"
            kind = "consanguinity" if p.consanguineous else "partnership"
            offsets = (-CONSANGUINITY_GAP, CONSANGUINITY_GAP) if p.consanguineous else (0.0,)
            if y[a] == y[b] and abs(slot[a] - slot[b]) == 1:
                for off in offsets:
                    segs.append(Segment(kind, x[a] + HALF, y[a] + off, x[b] - HALF, y[b] + off, ref))
                mx, my = (x[a] + x[b]) / 2, y[a]
            elif y[a] == y[b]:  # someone in between: go over them
                top = y[a] - ROUTE
                for off in offsets:
                    segs.append(Segment(kind, x[a] + off, y[a] - HALF, x[a] + off, top + off, ref))
                    segs.append(Segment(kind, x[a] + off, top + off, x[b] - off, top + off, ref))
                    segs.append(Segment(kind, x[b] - off, top + off, x[b] - off, y[b] - HALF, ref))
                mx, my = (x[a] + x[b]) / 2, top
            else:
                for off in offsets:
                    segs.append(Segment(kind, x[a], y[a] + off, x[b], y[b] + off, ref))
                mx, my = (x[a] + x[b]) / 2, (y[a] + y[b]) / 2
            if p.separated:
                for dx in (-0.35, -0.15):
                    segs.append(Segment("separation", mx + dx - 0.1, my + 0.25, mx + dx + 0.1, my - 0.25, ref))
            if not p.children:
                continue
            if p.consanguineous and my == y[a] == y[b]:
                my += CONSANGUINITY_GAP  # descend from the lower of the two lines
            sib_y = min(y[c] for c in p.children) - SIB_DROP
            attach = []
            twins_done = set()
            for c in p.children:
                group = self.twin_of.get(c)
                if group and c not in twins_done and all(g in p.children for g in group):
                    twins_done.update(group)
                    apex = sum(x[g] for g in group) / len(group)
                    attach.append(apex)
                    ends = []
                    for g in sorted(group, key=lambda q: x[q]):
                        segs.append(Segment("twin", apex, sib_y, x[g], y[g] - HALF, g,
                                            self.ped.individuals[g].adopted == "in"))
                        ends.append(((apex + x[g]) / 2, (sib_y + y[g] - HALF) / 2))
                    if any(t.monozygotic and c in t.ids for t in self.ped.twins):
                        segs.append(Segment("mz-bar", ends[0][0], ends[0][1], ends[-1][0], ends[-1][1], "+".join(group)))
                elif c not in twins_done:
                    attach.append(x[c])
                    segs.append(Segment("child", x[c], sib_y, x[c], y[c] - HALF, c,
                                        self.ped.individuals[c].adopted == "in"))
            segs.append(Segment("descent", mx, my, mx, sib_y, ref))
            lo, hi = min(attach + [mx]), max(attach + [mx])
            if hi - lo > 1e-9:
                segs.append(Segment("sibship", lo, sib_y, hi, sib_y, ref))
        for pid, ind in self.ped.individuals.items():
            if ind.infertility or ind.no_children_by_choice:
                kind = "infertility" if ind.infertility else "no-children"
                top, bottom = y[pid] + HALF, y[pid] + HALF + 0.6
                segs.append(Segment(kind, x[pid], top, x[pid], bottom, pid))
                for k in range(2 if ind.infertility else 1):
                    segs.append(Segment(kind, x[pid] - 0.3, bottom - k * 0.15, x[pid] + 0.3, bottom - k * 0.15, pid))
        return segs

    def run(self) -> Layout:
        self._units(lambda p: True)
        if not self._levels():  # a partnership across generations: keep those partners apart
            self._units(lambda p: p.a not in self.parents and p.b not in self.parents)
            if not self._levels():
                self._units(lambda p: False)
                self._levels()
        self._order()
        self._positions()
        self.y = {pid: self.level[pid] * ROW for pid in self.people}
        segs = self._segments()
        width = max(self.x.values(), default=0.0) + SYMBOL
        height = max(self.y.values(), default=0.0) + SYMBOL
        return Layout(self.x, self.y, dict(self.level), {g: list(r) for g, r in sorted(self.rows.items())},
                      segs, width, height)


def _pava(targets: list[float], gaps: list[float]) -> list[float]:
    """Least-squares positions closest to ``targets`` keeping x[i] - x[i-1] >= gaps[i] (gaps[0] unused).

    Subtracting the cumulative gaps turns it into isotonic regression, which pool-adjacent-violators
    solves exactly in one pass.
    """
    offsets, acc = [], 0.0
    for i, g in enumerate(gaps):
        acc += g if i else 0.0
        offsets.append(acc)
    blocks: list[list[float]] = []  # [mean, count, first index]
    for i, t in enumerate(targets):
        blocks.append([t - offsets[i], 1, i])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, n2, _ = blocks.pop()
            m1, n1, s1 = blocks[-1]
            blocks[-1] = [(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2, s1]
    out = [0.0] * len(targets)
    for mean, n, start in blocks:
        for i in range(start, start + int(n)):
            out[i] = mean + offsets[i]
    return out


def crossings(lay: Layout) -> list[tuple[Segment, Segment]]:
    """Pairs of lines that cross (or run over each other) away from their ends; for tests and checks."""
    segs = [s for s in lay.segments if s.kind in LINE_KINDS]
    found = []
    for i, s in enumerate(segs):
        for t in segs[i + 1:]:
            if s.ref == t.ref and s.kind == t.kind:
                continue
            if _cross(s, t):
                found.append((s, t))
    return found


def _cross(s: Segment, t: Segment, eps: float = 1e-6) -> bool:
    def orient(ax, ay, bx, by, cx, cy):
        v = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        return 0 if abs(v) < eps else (1 if v > 0 else -1)

    p1, p2, p3, p4 = (s.x1, s.y1), (s.x2, s.y2), (t.x1, t.y1), (t.x2, t.y2)
    o1, o2 = orient(*p1, *p2, *p3), orient(*p1, *p2, *p4)
    o3, o4 = orient(*p3, *p4, *p1), orient(*p3, *p4, *p2)
    if o1 == o2 == o3 == o4 == 0:  # collinear: crossing when they overlap over a length
        if abs(s.x1 - s.x2) > abs(s.y1 - s.y2):
            lo, hi = max(min(s.x1, s.x2), min(t.x1, t.x2)), min(max(s.x1, s.x2), max(t.x1, t.x2))
        else:
            lo, hi = max(min(s.y1, s.y2), min(t.y1, t.y2)), min(max(s.y1, s.y2), max(t.y1, t.y2))
        return hi - lo > eps
    # a proper crossing: each segment's ends strictly on both sides of the other (T-junctions excluded)
    return o1 * o2 < 0 and o3 * o4 < 0
