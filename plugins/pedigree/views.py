"""The pedigree section of the patient page (editor) and of the panel page (read-only), and exports.

Every change is a form post carrying the version it was made on: an older version gets 409, bad
input 422, and in both cases nothing is stored. An htmx post gets the re-rendered section (errors
included, htmx swaps 4xx too); a plain post is redirected to the section page (no JavaScript needed).
Reads and changes are audited like the core's patient record; changes emit ``pedigree.changed``.
"""

from __future__ import annotations

import io
import re
from datetime import date
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, PathParameter, QueryParameter
from litestar.response import Redirect, Template

from core.errors import problem_response
from core.events import Event
from core.openapi import Id, operation, problems
from core.permissions import allowed
from core.web import is_fragment_request, page
from plugins.pedigree import EDIT, VIEW, edit, store
from plugins.pedigree.canrisk import export_canrisk
from plugins.pedigree.layout import layout as make_layout
from plugins.pedigree.model import ADOPTED, PREGNANCY_KINDS, SEXES, STATUSES, Genotype, Pedigree, PedigreeError, assign_labels
from plugins.pedigree.ped import export_ped
from plugins.pedigree.svg import PATTERNS, render_svg

BASE = "/pedigree/patients/{pseudonym:str}"
IID = re.compile(r"^i[0-9]{1,6}$")
SYSTEM = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,19}$")
LIMITS = {"note": 500, "gender_identity": 40, "label": 300, "code": 64, "gene": 40, "variant": 200, "zygosity": 40,
          "result": 60}
MAX_GENOTYPES = 10
MAX_PEOPLE = 500  # a family tree drawn by hand; beyond this something is wrong
ZYGOSITIES = ("", "heterozygous", "homozygous", "hemizygous", "compound heterozygous", "mosaic")
# Text types without a charset: Litestar adds "; charset=utf-8" itself (given here too, it was sent twice).
FORMATS = {"svg": "image/svg+xml", "png": "image/png", "pdf": "application/pdf", "ped": "text/plain",
           "fhir": "application/fhir+json", "phenopacket": "application/json",
           "canrisk": "text/plain"}
MAX_IMPORT = 1_000_000  # characters of an imported PED or FHIR file


async def _view(request: Request, patient: dict, current: store.Current, *, editing: str | None = None,
          errors: list[str] | None = None, status: int = 200, message: str = "", form: dict | None = None) -> Template:
    ped = current.pedigree
    lay = make_layout(ped)
    labels = assign_labels(lay)
    actor = request.scope["user"]
    people = sorted(ped.individuals.values(), key=lambda i: _label_key(labels.get(i.id, "")))
    _, ped_warnings = export_ped(_relabel(ped, labels))
    try:
        canrisk_warnings = export_canrisk(ped, labels)[1]
    except PedigreeError as exc:
        canrisk_warnings = exc.problems
    ctx: dict[str, Any] = {
        "patient": patient, "pedigree": ped, "version": current.version, "can_undo": current.can_undo,
        "svg": _clickable(render_svg(ped, lay, labels=labels, id_prefix="ped", title="Family tree"),
                          f"/pedigree/patients/{patient['pseudonym']}"), "labels": labels,
        "people": people, "may_edit": allowed(actor, EDIT) and not patient.get("restricted"), "editing": None,
        "errors": errors or [], "message": message, "sexes": SEXES, "statuses": STATUSES, "adopted": ADOPTED,
        "pregnancy_kinds": PREGNANCY_KINDS, "zygosities": ZYGOSITIES, "ped_warnings": ped_warnings,
        "canrisk_warnings": canrisk_warnings,
        "base": f"/pedigree/patients/{patient['pseudonym']}", "history": await store.history(current.record_id, 10),
        "limits": LIMITS, "max_genotypes": MAX_GENOTYPES, "form": form or {},
    }
    if editing and editing in ped.individuals:
        ctx["editing"] = ped.individuals[editing]
    return page(request, "pedigree/page.html", ctx, fragment="pedigree/_section.html", status_code=status)


def _clickable(svg: str, base: str) -> str:
    """A click on a symbol opens that person's side form (htmx reads hx-* on SVG elements too);
    the people table's links remain the keyboard and no-JavaScript way."""
    return re.sub(r'(<g class="individual[^"]*" data-id="(i[0-9]+)")',
                  lambda m: f'{m.group(1)} hx-get="{base}/individuals/{m.group(2)}" hx-target="#pedigree-editor" '
                            f'hx-swap="outerHTML"', svg)


def _label_key(label: str) -> tuple[int, int]:
    roman, _, number = label.partition("-")
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}
    total = 0
    for i, ch in enumerate(roman):
        v = values.get(ch, 0)
        total += -v if i + 1 < len(roman) and values.get(roman[i + 1], 0) > v else v
    return total, int(number) if number.isdecimal() else 0


def _relabel(ped: Pedigree, labels: dict[str, str]) -> Pedigree:
    """A copy whose ids are the generation/number labels (what PED and other tools should show)."""
    out = edit.clone(ped)

    def to(x: str) -> str:
        return labels.get(x, x)

    out.individuals = {to(k): v for k, v in out.individuals.items()}
    for k, v in out.individuals.items():
        v.id = k
    for p in out.partnerships:
        p.a, p.b, p.children = to(p.a), to(p.b), [to(c) for c in p.children]
    for t in out.twins:
        t.ids = [to(x) for x in t.ids]
    return out


async def _audit(request: Request, action: str, patient: dict, detail: dict | None = None) -> None:
    from core.patients.records import audit

    await audit(request, action, patient, detail)


async def _patient(request: Request, pseudonym: str, permission: str = "patients.view") -> dict:
    from core.patients.access import load_patient

    return await load_patient(request, pseudonym, permission)


# --- reading ---------------------------------------------------------------------------------


@get(BASE, opt={"permission": VIEW}, include_in_schema=False)
async def section(request: Request, pseudonym: FromPath[str]) -> Template:
    patient = await _patient(request, pseudonym)
    current = await store.load(patient)
    await _audit(request, "pedigree.view", patient, {"version": current.version})
    return await _view(request, patient, current)


@get(BASE + "/individuals/{iid:str}", opt={"permission": VIEW}, include_in_schema=False)
async def individual_form(request: Request, pseudonym: FromPath[str], iid: FromPath[str]) -> Template:
    patient = await _patient(request, pseudonym)
    current = await store.load(patient)
    if iid not in current.pedigree.individuals:
        raise NotFoundException("No such person in this family tree.")
    await _audit(request, "pedigree.view", patient, {"version": current.version})
    return await _view(request, patient, current, editing=iid)


# The exports in the OpenAPI document (core/openapi.py): two of the formats are JSON.
EXPORT_DOC = dict(
    tags=["pedigree"],
    operation_class=operation(
        parameter_schemas={"fmt": {"enum": list(FORMATS)}, "privacy": {"enum": ["full", "minimal"], "default": "full"}},
        content={200: {"application/fhir+json": {"type": "object", "description": "fhir: the GA4GH Pedigree FHIR Bundle",
                                                 "properties": {"resourceType": {"const": "Bundle"}}, "required": ["resourceType"]},
                       "application/json": {"type": "object", "description": "phenopacket: a Phenopackets v2 Family"},
                       **{mt: None for f, mt in FORMATS.items() if f not in ("fhir", "phenopacket")}}}),
    responses=problems(s404="No such patient, you may not see them, or no such format.",
                       s422="privacy is full or minimal; or the CanRisk file cannot hold this family (the reasons listed)."),
)
Format = Annotated[str, PathParameter(description="svg, png, pdf, ped, fhir (GA4GH Pedigree Bundle), phenopacket (v2 Family) "
                                              "or canrisk; other names: 404.")]
Privacy = Annotated[str, QueryParameter(name="privacy", description="full, or minimal (no ages, dates or notes); else 422.")]


@get(BASE + "/export/{fmt:str}", opt={"permission": VIEW}, operation_id="exportPedigree", **EXPORT_DOC)
async def export(request: Request, pseudonym: FromPath[str], fmt: Format, privacy: Privacy = "full") -> Response:
    """The family tree in one format, as a download (audited)."""
    patient = await _patient(request, pseudonym)
    current = await store.load(patient)
    response = _export(current.pedigree, fmt, privacy, f"pedigree-{patient['pseudonym']}-v{current.version}")
    await _audit(request, "pedigree.export", patient, {"version": current.version, "format": fmt, "privacy": privacy})
    return response


def _export(ped: Pedigree, fmt: str, privacy: str, stem: str) -> Response:
    if fmt not in FORMATS:
        raise NotFoundException(f"Export formats: {', '.join(FORMATS)}.")
    if privacy not in ("full", "minimal"):
        return problem_response(422, "privacy must be full or minimal.")
    lay = make_layout(ped)
    labels = assign_labels(lay)
    if fmt == "fhir":
        import json

        from plugins.pedigree.fhir import export_bundle

        # the internal ids (i1, i2 ...) stay: they carry no names and keep the round trip exact
        out = export_bundle(ped if privacy == "full" else _minimal(ped))
        return Response(json.dumps(out, ensure_ascii=False, indent=1).encode(), media_type=FORMATS[fmt], headers={
            "Content-Disposition": f'attachment; filename="{stem}.fhir.json"', "Cache-Control": "no-store"})
    if fmt == "phenopacket":
        import json

        from plugins.pedigree.phenopackets import export_family

        family, warnings = export_family(ped if privacy == "full" else _minimal(ped), labels)
        # the losses travel in the response header as well as on the section (like PED's comments)
        return Response(json.dumps(family, ensure_ascii=False, indent=1).encode(), media_type=FORMATS[fmt], headers={
            "Content-Disposition": f'attachment; filename="{stem}.family.json"', "Cache-Control": "no-store",
            "X-Pedigree-Warnings": "; ".join(warnings).encode("ascii", "replace").decode()[:1000]})
    if fmt == "canrisk":
        from plugins.pedigree.canrisk import export_canrisk

        try:
            text, warnings = export_canrisk(ped if privacy == "full" else _minimal(ped), labels)
        except PedigreeError as exc:
            return problem_response(422, "The CanRisk file cannot hold this family.", list(exc.problems))
        # the format has no comment lines: its losses travel in a header (and are listed on the section)
        return Response(text.encode(), media_type=FORMATS[fmt], headers={
            "Content-Disposition": f'attachment; filename="{stem}.canrisk.txt"', "Cache-Control": "no-store",
            "X-Pedigree-Warnings": "; ".join(warnings).encode("ascii", "replace").decode()[:1000]})
    if fmt == "png":
        from plugins.pedigree.png import render_png

        body = render_png(ped, lay, labels=labels, privacy=privacy)
    elif fmt == "ped":
        # PED has no place for ages or notes, so privacy does not change it; its losses head the file as comments.
        text, warnings = export_ped(_relabel(ped, labels))
        body = "".join(f"# lossy: {w}\n" for w in warnings) + text
    else:
        svg = render_svg(ped, lay, labels=labels, privacy=privacy, id_prefix="ped", title="Family tree")
        body = svg.encode() if fmt == "svg" else pdf_of(svg)
    return Response(body, media_type=FORMATS[fmt], headers={
        "Content-Disposition": f'attachment; filename="{stem}.{fmt}"', "Cache-Control": "no-store"})


PDF_TEXT = str.maketrans({"–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "→": "->", "…": "...", "≥": ">=", "≤": "<="})


def _latin1(text: str) -> str:
    """fpdf2's built-in fonts cover Latin-1 only (a Unicode font would have to ship with CPMS):
    common punctuation is spelled out, accents kept where Latin-1 has them, anything else becomes '?'."""
    import unicodedata

    text = text.translate(PDF_TEXT)
    out = []
    for ch in text:
        if ord(ch) < 256:
            out.append(ch)
        else:
            base = unicodedata.normalize("NFKD", ch)[:1]
            out.append(base if base and ord(base) < 256 else "?")
    return "".join(out)


def _minimal(ped: Pedigree) -> Pedigree:
    """A copy without ages, years, result dates and notes (the "minimal" privacy level)."""
    out = edit.clone(ped)
    for ind in out.individuals.values():
        ind.age = ind.birth_year = ind.death_year = None
        ind.note = ""
        for g in ind.genotypes:
            g.date = ""
    return out


def pdf_of(svg: str) -> bytes:
    """The SVG placed on an A4 page (landscape when wider than tall), scaled to fit, by fpdf2."""
    from fpdf import FPDF

    size = re.search(r'width="([\d.]+)" height="([\d.]+)"', svg)
    w, h = (float(size.group(1)), float(size.group(2))) if size else (800.0, 600.0)
    pdf = FPDF(orientation="L" if w > h else "P", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.add_page()
    margin = 10
    room_w, room_h = pdf.w - 2 * margin, pdf.h - 2 * margin
    scale = min(room_w / w, room_h / h)
    # fpdf2 reads url(#id) references as word characters only; the renderer's ids have hyphens
    svg = re.sub(r"<title[^>]*>.*?</title>", "", svg, flags=re.S)  # for screen readers; fpdf2 warns on each
    svg = re.sub(r"\b([A-Za-z0-9_]+)-(clip|pat)-([A-Za-z0-9_]+)", r"\1_\2_\3", svg)
    pdf.image(io.BytesIO(_latin1(svg).encode()), x=margin, y=margin, w=w * scale, h=h * scale)
    return bytes(pdf.output())


@get("/pedigree/panels/{panel_id:int}", opt={"permission": VIEW}, include_in_schema=False)
async def panel_section(request: Request, panel_id: FromPath[int]) -> Template:
    """Read-only: panel members are outside the enrolling hospital (pseudonymous view, no editor)."""
    from core.panels.access import audit, load_panel

    ctx = await load_panel(request, panel_id)
    current = await store.load(ctx.patient)
    await audit(request, ctx, "pedigree.view", {"version": current.version})
    svg = render_svg(current.pedigree, id_prefix=f"pp{panel_id}", title="Family tree") if current.record_id else ""
    return Template("pedigree/_panel.html", context={"svg": svg, "panel_id": panel_id, "version": current.version})


@get("/pedigree/panels/{panel_id:int}/export/{fmt:str}", opt={"permission": VIEW}, operation_id="exportPanelPedigree", **EXPORT_DOC)
async def panel_export(request: Request, panel_id: Id, fmt: Format, privacy: Privacy = "full") -> Response:
    """The family tree of a panel's patient, for the panel's participants (403 while the patient's consent
    suspends the panel)."""
    from core.panels.access import audit, load_panel

    ctx = await load_panel(request, panel_id)
    current = await store.load(ctx.patient)
    response = _export(current.pedigree, fmt, privacy, f"pedigree-panel-{panel_id}-v{current.version}")
    await audit(request, ctx, "pedigree.export", {"version": current.version, "format": fmt, "privacy": privacy})
    return response


# --- changing --------------------------------------------------------------------------------


def _version_of(form) -> int | None:
    raw = str(form.get("version", "") or "")
    return int(raw) if raw.isdecimal() and len(raw) < 10 else None


async def _change(request: Request, pseudonym: str, apply, *, editing_on_error: str | None = None,
                  notes: list[str] | None = None):
    """Load, apply ``apply(pedigree, form, labels) -> action`` to a copy, validate, store; or explain why not.
    ``notes`` (filled by ``apply``: what an import changed or left out) are shown with the result."""
    from core.identity.login import client_address

    patient = await _patient(request, pseudonym, EDIT)
    form = await request.form()
    current = await store.load(patient)
    expected = _version_of(form)
    stale = ("This family tree changed since you opened it (someone else edited it, or another tab). "
             "Nothing was saved; here is the current version.")
    if expected is None:
        return await _view(request, patient, current, errors=["The form lacks its version; reload the page."], status=422)
    if expected != current.version:
        return await _view(request, patient, current, errors=[stale], status=409)
    if len(current.pedigree.individuals) >= MAX_PEOPLE and request.url.path.endswith("/add"):
        return await _view(request, patient, current, errors=[f"A family tree holds at most {MAX_PEOPLE} people."], status=422)
    labels = assign_labels(make_layout(current.pedigree))
    work = edit.clone(current.pedigree)
    actor = request.scope["user"]
    try:
        action, new, parent = await apply(work, form, labels, current)
        version = await store.save(
            patient, current, expected, new, action, actor.user_id, parent,
            audit=lambda v: _audit(request, "pedigree.change", patient, {"version": v, "action": action[:100]}),
        )
    except PedigreeError as exc:
        return await _view(request, patient, current, errors=exc.problems, status=422, editing=editing_on_error,
                     form=dict(form) if editing_on_error else None)
    except store.Stale:
        return await _view(request, patient, await store.load(patient), errors=[stale], status=409)
    await request.app.state.host.events.emit(Event(
        "pedigree.changed", actor.user_id, "patient", patient["pseudonym"], {"version": version, "action": action},
        client_address(request)))
    if not is_fragment_request(request):
        return Redirect(f"/pedigree/patients/{patient['pseudonym']}", status_code=303)
    note = (" " + " ".join(notes)) if notes else ""
    return await _view(request, patient, await store.load(patient), message=f"Saved: {action} (version {version}).{note}")


def _who(form, key: str = "of") -> str:
    iid = str(form.get(key, "") or "")
    if not IID.match(iid):
        raise PedigreeError(["Choose a person of the family tree."])
    return iid


@post(BASE + "/add", opt={"permission": EDIT}, include_in_schema=False)
async def add(request: Request, pseudonym: FromPath[str]) -> Template | Redirect:
    async def apply(work, form, labels, current):
        kind = str(form.get("kind", ""))
        sex = str(form.get("sex", "") or "") or None
        if sex is not None and sex not in SEXES:
            raise PedigreeError([f"Sex must be one of {', '.join(SEXES)}."])
        partner = str(form.get("partner", "") or "") or None
        if partner is not None and not IID.match(partner):
            raise PedigreeError(["Choose a partner of the family tree."])
        iid = _who(form)
        action = edit.add(work, kind, iid, sex, str(form.get("monozygotic", "")) in ("1", "on", "true"), partner)
        return f"{action} ({labels.get(iid, iid)})", work, ...

    return await _change(request, pseudonym, apply)


@post(BASE + "/individuals/{iid:str}/delete", opt={"permission": EDIT}, include_in_schema=False)
async def delete(request: Request, pseudonym: FromPath[str], iid: FromPath[str]) -> Template | Redirect:
    async def apply(work, form, labels, current):
        if iid not in work.individuals:
            raise PedigreeError(["This person is not in the family tree (any more)."])
        _, removed = edit.delete(work, iid, labels)
        return f"delete {', '.join(labels.get(x, x) for x in removed)}", work, ...

    return await _change(request, pseudonym, apply)


@post(BASE + "/undo", opt={"permission": EDIT}, include_in_schema=False)
async def undo(request: Request, pseudonym: FromPath[str]) -> Template | Redirect:
    async def apply(work, form, labels, current):
        before, parent = await store.undo_target(current)
        return "undo", before, parent

    return await _change(request, pseudonym, apply)


def _condition_fields(form, work, *, keep: str | None = None) -> tuple[str, str, str]:
    """(label, system, code) of the condition form, checked; ``keep`` is the condition being changed
    (its own name is no duplicate)."""
    label = str(form.get("cond_label", "") or "").strip()
    system = str(form.get("cond_system", "") or "").strip()
    code = str(form.get("cond_code", "") or "").strip()
    problems = []
    if not label or len(label) > LIMITS["label"]:
        problems.append(f"A condition needs a name of 1 to {LIMITS['label']} characters.")
    if system and not SYSTEM.match(system):
        problems.append("The code system is not valid.")
    if code and (len(code) > LIMITS["code"] or any(c.isspace() for c in code)):
        problems.append("The code is not valid.")
    if bool(system) != bool(code):
        problems.append("Give both a code system and a code, or neither.")
    if any(c.label.lower() == label.lower() and cid != keep for cid, c in work.conditions.items()):
        problems.append(f"The condition {label!r} is already in the legend.")
    if problems:
        raise PedigreeError(problems)
    return label, system.upper(), code


def _legend_entry(work, cid: str):
    if cid not in work.conditions:
        raise PedigreeError(["That condition is not in the legend (any more)."])
    return work.conditions[cid]


@post(BASE + "/conditions", opt={"permission": EDIT}, include_in_schema=False)
async def add_condition(request: Request, pseudonym: FromPath[str]) -> Template | Redirect:
    async def apply(work, form, labels, current):
        if len(work.conditions) >= len(PATTERNS):
            raise PedigreeError([f"A family tree shows at most {len(PATTERNS)} conditions."])
        label, system, code = _condition_fields(form, work)
        n = len(work.conditions) + 1
        while f"c{n}" in work.conditions:
            n += 1
        work.condition(f"c{n}", label, system=system or None, code=code or None)
        return f"add condition {label[:60]}", work, ...

    return await _change(request, pseudonym, apply)


@post(BASE + "/conditions/{cid:str}", opt={"permission": EDIT}, include_in_schema=False)
async def change_condition(request: Request, pseudonym: FromPath[str], cid: FromPath[str]) -> Template | Redirect:
    """Rename or recode a legend entry: everyone's status for it stays (it is the same condition)."""
    async def apply(work, form, labels, current):
        entry = _legend_entry(work, cid)
        label, system, code = _condition_fields(form, work, keep=cid)
        entry.label, entry.system, entry.code = label, system or None, code or None
        return f"change condition {label[:60]}", work, ...

    return await _change(request, pseudonym, apply)


@post(BASE + "/conditions/{cid:str}/delete", opt={"permission": EDIT}, include_in_schema=False)
async def remove_condition(request: Request, pseudonym: FromPath[str], cid: FromPath[str]) -> Template | Redirect:
    """Take a condition out of the legend and everyone's statuses for it (undo brings both back)."""
    async def apply(work, form, labels, current):
        entry = _legend_entry(work, cid)
        del work.conditions[cid]
        for person in work.individuals.values():
            person.conditions.pop(cid, None)
        return f"remove condition {entry.label[:60]}", work, ...

    return await _change(request, pseudonym, apply)


@post(BASE + "/import", opt={"permission": EDIT}, include_in_schema=False)
async def import_file(request: Request, pseudonym: FromPath[str]) -> Template | Redirect:
    """Replace the tree by a PED or GA4GH FHIR file (a new version: undo brings the old tree back).
    Ids from the file may be names, so every person gets a new internal id; PED needs the proband's id."""
    async def apply(work, form, labels, current):
        from plugins.pedigree.fhir import import_bundle
        from plugins.pedigree.ped import import_ped

        fmt = str(form.get("format", ""))
        upload = form.get("file")
        text = (await upload.read()).decode("utf-8", "replace") if hasattr(upload, "read") else str(form.get("text", "") or "")
        if not text.strip():
            raise PedigreeError(["Choose a file (or paste its text) to import."])
        if len(text) > MAX_IMPORT:
            raise PedigreeError([f"The file is larger than {MAX_IMPORT} characters."])
        if fmt == "ped":
            families = import_ped(text, notes=notes)
            if len(families) != 1:
                raise PedigreeError([f"The file holds {len(families)} families; import one at a time."])
            new = families[0]
            proband = str(form.get("proband", "") or "").strip()
            if proband not in new.individuals:
                raise PedigreeError(["Give the PED id of the patient (the proband), as written in the file."])
            new.individuals[proband].proband = True
        elif fmt == "fhir":
            from core.jsonbody import JsonRejected, parse

            try:
                data = parse(text, max_bytes=MAX_IMPORT * 4, max_depth=64, what="The file")
            except JsonRejected as exc:
                raise PedigreeError([exc.detail]) from None
            new = import_bundle(data)
        else:
            raise PedigreeError(["Import formats: ped, fhir."])
        if sum(i.proband for i in new.individuals.values()) != 1:
            raise PedigreeError(["The imported family must have exactly one proband (the patient)."])
        if len(new.individuals) > MAX_PEOPLE:
            raise PedigreeError([f"A family tree holds at most {MAX_PEOPLE} people."])
        notes.append("People were given new ids (i1, i2…) and the family id became FAM1: ids in files often carry names.")
        return f"import {fmt.upper()} ({len(new.individuals)} people)", edit.rekey(new), ...

    notes: list[str] = []
    return await _change(request, pseudonym, apply, notes=notes)


@post(BASE + "/partnerships", opt={"permission": EDIT}, include_in_schema=False)
async def update_partnership(request: Request, pseudonym: FromPath[str]) -> Template | Redirect:
    """Consanguinity (double line) and separation (a break in the line) of a couple."""
    async def apply(work, form, labels, current):
        a, b = _who(form, "a"), _who(form, "b")
        found = work.partnership_of(a, b)
        if found is None:
            raise PedigreeError(["These two people are not partners."])
        found.consanguineous, found.separated = _flag(form, "consanguineous"), _flag(form, "separated")
        return f"edit partnership {labels.get(a, a)} + {labels.get(b, b)}", work, ...

    return await _change(request, pseudonym, apply)


def _int(form, key: str, low: int, high: int, what: str, problems: list[str]) -> int | None:
    raw = str(form.get(key, "") or "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not low <= int(raw) <= high:
        problems.append(f"{what} must be a whole number from {low} to {high}.")
        return None
    return int(raw)


def _flag(form, key: str) -> bool:
    return str(form.get(key, "") or "") in ("1", "on", "true", "yes")


@post(BASE + "/individuals/{iid:str}", opt={"permission": EDIT}, include_in_schema=False)
async def update_individual(request: Request, pseudonym: FromPath[str], iid: FromPath[str]) -> Template | Redirect:
    async def apply(work, form, labels, current):
        if iid not in work.individuals:
            raise PedigreeError(["This person is not in the family tree (any more)."])
        ind = work.individuals[iid]
        problems: list[str] = []
        this_year = date.today().year
        sex = str(form.get("sex", ""))
        if sex not in SEXES:
            problems.append(f"Sex must be one of {', '.join(SEXES)}.")
        gender = str(form.get("gender_identity", "") or "").strip()
        if len(gender) > LIMITS["gender_identity"]:
            problems.append(f"Gender identity: at most {LIMITS['gender_identity']} characters.")
        age = _int(form, "age", 0, 130, "Age", problems)
        birth = _int(form, "birth_year", 1800, this_year + 1, "Year of birth", problems)
        death = _int(form, "death_year", 1800, this_year, "Year of death", problems)
        order = _int(form, "order", 1, 99, "Birth order", problems)
        adopted = str(form.get("adopted", "") or "") or None
        if adopted not in (None, *ADOPTED):
            problems.append("Adoption must be in, out or none.")
        pregnancy = str(form.get("pregnancy", "") or "") or None
        if pregnancy not in (None, *PREGNANCY_KINDS):
            problems.append(f"Pregnancy must be one of {', '.join(PREGNANCY_KINDS)} or none.")
        note = str(form.get("note", "") or "").strip()
        if len(note) > LIMITS["note"]:
            problems.append(f"The note is longer than {LIMITS['note']} characters.")
        conditions = {}
        for cid in work.conditions:
            status = str(form.get(f"cond_{cid}", "unknown") or "unknown")
            if status not in STATUSES:
                problems.append(f"Status for {work.conditions[cid].label} must be one of {', '.join(STATUSES)}.")
            elif status != "unknown":
                conditions[cid] = status
        genotypes = _genotypes(form, problems)
        deceased = _flag(form, "deceased")
        if death is not None and not deceased:
            problems.append("A year of death is given but the person is not marked deceased.")
        if problems:
            raise PedigreeError(problems)
        if ind.proband and pregnancy:
            raise PedigreeError(["The proband is a born person, not a pregnancy."])
        ind.sex, ind.gender_identity, ind.deceased, ind.age = sex, gender or None, deceased, age
        ind.birth_year, ind.death_year, ind.order, ind.adopted, ind.pregnancy = birth, death, order, adopted, pregnancy
        ind.consultand, ind.tested = _flag(form, "consultand"), _flag(form, "tested")
        ind.infertility, ind.no_children_by_choice = _flag(form, "infertility"), _flag(form, "no_children_by_choice")
        ind.note, ind.conditions, ind.genotypes = note, conditions, genotypes
        return f"edit {labels.get(iid, iid)}", work, ...

    return await _change(request, pseudonym, apply, editing_on_error=iid)


def _genotypes(form, problems: list[str]) -> list[Genotype]:
    cols = {k: form.getall(f"g_{k}", []) if hasattr(form, "getall") else [] for k in ("gene", "variant", "zygosity", "result", "date")}
    n = max((len(v) for v in cols.values()), default=0)
    out = []
    for i in range(n):
        row = {k: str(v[i]).strip() if i < len(v) else "" for k, v in cols.items()}
        if not any(row.values()):
            continue
        if not row["gene"]:
            problems.append(f"Genotype {i + 1}: the gene is missing.")
            continue
        for key in ("gene", "variant", "zygosity", "result"):
            if len(row[key]) > LIMITS[key]:
                problems.append(f"Genotype {i + 1}: {key} is longer than {LIMITS[key]} characters.")
        if row["zygosity"] not in ZYGOSITIES:
            problems.append(f"Genotype {i + 1}: zygosity must be one of {', '.join(z for z in ZYGOSITIES if z)}.")
        if row["date"]:
            try:
                if date.fromisoformat(row["date"]) > date.today():
                    problems.append(f"Genotype {i + 1}: the result date is in the future.")
            except ValueError:
                problems.append(f"Genotype {i + 1}: the date must be YYYY-MM-DD.")
        out.append(Genotype(**row))
    if len(out) > MAX_GENOTYPES:
        problems.append(f"At most {MAX_GENOTYPES} genotypes per person.")
    return out


ROUTES = [section, individual_form, export, panel_section, panel_export, add, delete, undo, add_condition, change_condition, remove_condition,
          update_individual, import_file, update_partnership]
