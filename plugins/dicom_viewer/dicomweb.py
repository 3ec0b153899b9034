"""DICOMweb (PS3.18) for one patient's de-identified studies, behind the same permissions as the pages,
so external viewers (OHIF, Weasis) and scripts (``dicomweb-client``) can read and add images.

Service root: ``/dicomweb/patients/{pseudonym}``. Authentication is the CPMS session (cookie); a
STOW-RS post carries the CSRF header like any other change.

- QIDO-RS: ``GET /studies``, ``/series``, ``/instances``, ``/studies/{study}/series``,
  ``/studies/{study}/series/{series}/instances``, ``/studies/{study}/instances`` (application/dicom+json).
  Matching on StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID (one UID, or a list: comma-separated
  or the key repeated, each element checked), Modality/ModalitiesInStudy,
  StudyDate (a date or a range ``A-B``; the shifted dates), with ``limit`` and ``offset``; other
  attributes are ignored (PS3.18 allows it). ``includefield`` is accepted; the answer holds the
  attributes listed in ``_study``/``_series``/``_instance``.
- WADO-RS: study, series and instance retrieval (multipart/related; type="application/dicom": the
  stored de-identified files), ``/metadata`` at each level (application/dicom+json, bulk data left out),
  ``/frames/{1,2,...}`` (multipart/related; type="application/octet-stream", native little-endian
  pixels: frames are decoded on the server whatever the stored transfer syntax, all of them before
  the answer starts; a frame that cannot be decoded is a 406 problem naming it), and ``/rendered``
  for instances and frames (image/jpeg by default, image/png or image/webp by Accept; ``window=c,w``).
- STOW-RS: ``POST /studies`` with multipart/related; type="application/dicom" goes through the same
  pipeline as an upload (streamed to disk, de-identified, stored, gated for burned-in text); the
  answer is the PS3.18 store response (ReferencedSOPSequence with the *de-identified* UIDs and their
  RetrieveURL; FailedSOPSequence with a reason per failure): 200 all stored, 202 some, 409 none.

Who sees what is ``access``: the enrolling hospital everything, accepted panel members reviewed
instances only, anyone else 404. Frame numbers here start at 1 (PS3.18); in ``frames`` at 0.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import Annotated, Any, AsyncIterator, TypedDict

from anyio import to_thread
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, PathParameter
from litestar.response import Stream

from core.openapi import operation, problems, query
from core.permissions import allowed
from plugins.dicom_viewer import access, files, frames, render, store
from plugins.dicom_viewer.access import UPLOAD, VIEW

DICOM_JSON = "application/dicom+json"
ROOT = "/dicomweb/patients/{pseudonym:str}"
MAX_RESULTS = 1000
HARD_MAX_BODY = 64 * 1024**3
UID = re.compile(r"^[0-9.]{1,64}$")
#: A UID matching key's value: one UID or a list separated by commas (or backslashes, as in DICOM).
UID_LIST = r"[0-9.]{1,64}(?:[,\\][0-9.]{1,64})*"
BULK_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
FAIL_PROCESSING, FAIL_DUPLICATE, FAIL_NOT_DICOM = 0xC000, 0x0111, 0xC122


# --- the OpenAPI document (core/openapi.py) -----------------------------------------------------------


class _DicomAttribute(TypedDict):
    """One attribute in DICOM JSON (PS3.18 F.2): its VR and, unless empty, its values."""

    vr: str


class DicomAttribute(_DicomAttribute, total=False):
    Value: list[Any]
    InlineBinary: str
    BulkDataURI: str


#: A DICOM JSON dataset: attributes by tag (eight hexadecimal digits).
DicomDataset = dict[str, DicomAttribute]
Pseudonym = Annotated[str, PathParameter(description="The patient's pseudonym (P and 11 letters or digits).")]
UidPath = Annotated[str, PathParameter(pattern=r"^[0-9.]{1,64}$", description="A DICOM UID (digits and dots, at most 64).")]
_UIDS = {"type": "string", "pattern": f"^{UID_LIST}$"}
QIDO_PARAMETERS = [
    *(query(name, _UIDS, f"{label}: one UID or a list (commas or backslashes); the key may be repeated.", repeated=True)
      for name, label in (("StudyInstanceUID", "Study Instance UID"), ("0020000D", "Study Instance UID"),
                          ("SeriesInstanceUID", "Series Instance UID"), ("0020000E", "Series Instance UID"),
                          ("SOPInstanceUID", "SOP Instance UID"), ("00080018", "SOP Instance UID"))),
    *(query(name, {"type": "string"}, "Modality (or modalities in study): one or a comma list.")
      for name in ("Modality", "00080060", "ModalitiesInStudy", "00080061")),
    *(query(name, {"type": "string"}, "Study date (shifted, YYYYMMDD) or a range A-B.") for name in ("StudyDate", "00080020")),
    query("limit", {"type": "string", "pattern": "^[0-9]{0,9}$"}, f"Results at most (a whole number; {MAX_RESULTS} at most)."),
    query("offset", {"type": "string", "pattern": "^[0-9]{0,9}$"}, "Results to skip (a whole number)."),
    query("includefield", {"type": "string"}, "Accepted; the answer holds the attributes this service knows."),
]
QIDO = dict(opt={"permission": VIEW}, media_type=DICOM_JSON, tags=["DICOMweb"],
            operation_class=operation(parameters=QIDO_PARAMETERS))
METADATA = dict(opt={"permission": VIEW}, media_type=DICOM_JSON, tags=["DICOMweb"])


class NotAcceptable(HTTPException):
    status_code = 406


#: Decoded frames held in memory for one WADO-RS frames answer; past it they are decoded twice.
FRAME_BUFFER = 256 * 1024**2


def _problem(status: int, title: str, detail: str, **extra) -> Response:
    """An RFC 9457 problem (application/problem+json)."""
    return Response({"type": "about:blank", "title": title, "status": status, "detail": detail, **extra},
                    status_code=status, media_type="application/problem+json",
                    headers={"Cache-Control": "private, no-store"})


# --- access ---------------------------------------------------------------------------------------


async def _patient(request: Request, pseudonym: str) -> tuple[dict, tuple]:
    from core.patients.tables import Patient

    row = await Patient.select(
        Patient.id, Patient.pseudonym, Patient.nickname, Patient.hcp, Patient.erased_at, Patient.restricted,
    ).where(Patient.pseudonym == pseudonym[:20]).first()
    role = await access.patient_role(request.scope.get("user"), row)
    if role is None:
        raise NotFoundException("No such patient, or you may not see their images.")
    return row, role


async def _audit(request: Request, patient: dict, role: tuple, action: str, detail: dict) -> None:
    from core.audit.chain import record
    from core.identity.login import client_address

    if role[2] is not None:
        detail = {**detail, "panel": role[2]}
    await record(action, patient_pseudonym=patient["pseudonym"], patient_hcp=patient["hcp"],
                 actor=request.scope.get("user"), address=client_address(request), detail={"via": "dicomweb", **detail})


def _uid(value: str | None) -> str | None:
    if value is None:
        return None
    if not UID.match(value):
        raise HTTPException(status_code=400, detail="Not a UID.")
    return value


MAX_UID_LIST = 1000


def _uid_list(request: Request, *names: str) -> set[str] | None:
    """A QIDO-RS UID matching key: one UID, or a list (UID list matching, PS3.18 8.3.4.1 and PS3.4
    C.2.2.2.2) separated by commas (or backslashes, as in DICOM), the key possibly repeated; every
    element must be a UID (``UID_LIST``, as the OpenAPI document says). None when the key is absent
    or empty."""
    values: list[str] = []
    for name in names:
        for raw in request.query_params.getall(name, []):
            if not raw:
                continue
            if not re.fullmatch(UID_LIST, raw):
                bad = next((v for v in re.split(r"[,\\]", raw) if not UID.match(v)), raw)
                raise HTTPException(status_code=400, detail=f"Not a UID: {bad[:64]!r}.")
            values.extend(re.split(r"[,\\]", raw))
    if not values:
        return None
    if len(values) > MAX_UID_LIST:
        raise HTTPException(status_code=400, detail=f"At most {MAX_UID_LIST} UIDs in a list.")
    return set(values)


async def _rows(patient: dict, role: tuple, *, study: str | None = None, series: str | None = None,
                sop: str | None = None) -> list[dict]:
    """Instances the actor may see, with their series' and study's attributes, in study/series/number order."""
    from plugins.dicom_viewer.tables import Instance

    q = Instance.select(
        Instance.all_columns(),
        Instance.series.series_uid.as_alias("series_uid"), Instance.series.modality.as_alias("modality"),
        Instance.series.number.as_alias("series_number"), Instance.series.description.as_alias("series_description"),
        Instance.series.study.id.as_alias("study_id"), Instance.series.study.study_uid.as_alias("study_uid"),
        Instance.series.study.study_date.as_alias("study_date"),
        Instance.series.study.description.as_alias("study_description"),
        Instance.series.study.modalities.as_alias("modalities"),
    ).where(Instance.series.study.patient == patient["id"])
    if not role[0]:
        q = q.where(Instance.needs_review == False)  # noqa: E712
    if study:
        q = q.where(Instance.series.study.study_uid == study)
    if series:
        q = q.where(Instance.series.series_uid == series)
    if sop:
        q = q.where(Instance.sop_uid == sop)
    return await q.order_by(Instance.series.study.id).order_by(Instance.series.id).order_by(Instance.number).order_by(Instance.id)


# --- DICOM JSON -----------------------------------------------------------------------------------


def _el(vr: str, *values) -> dict:
    values = [v for v in values if v not in (None, "")]
    if not values:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    return {"vr": vr, "Value": list(values)}


def _base(request: Request, patient: dict) -> str:
    return f"{str(request.base_url).rstrip('/')}/dicomweb/patients/{patient['pseudonym']}"


def _study(request, patient: dict, rows: list[dict]) -> dict:
    r = rows[0]
    series = {x["series_uid"] for x in rows}
    return {
        "00080020": _el("DA", r["study_date"]), "00080050": _el("SH"), "00080061": _el("CS", *sorted({x["modality"] for x in rows if x["modality"]})),
        "00081030": _el("LO", r["study_description"]),
        "00081190": _el("UR", f"{_base(request, patient)}/studies/{r['study_uid']}"),
        "00100010": _el("PN", patient["pseudonym"]), "00100020": _el("LO", patient["pseudonym"]),
        "0020000D": _el("UI", r["study_uid"]), "00201206": _el("IS", len(series)), "00201208": _el("IS", len(rows)),
    }


def _series(request, patient: dict, rows: list[dict]) -> dict:
    r = rows[0]
    return {
        "00080060": _el("CS", r["modality"]), "0008103E": _el("LO", r["series_description"]),
        "00081190": _el("UR", f"{_base(request, patient)}/studies/{r['study_uid']}/series/{r['series_uid']}"),
        "0020000D": _el("UI", r["study_uid"]), "0020000E": _el("UI", r["series_uid"]),
        "00200011": _el("IS", r["series_number"]), "00201209": _el("IS", len(rows)),
    }


def _instance(request, patient: dict, r: dict) -> dict:
    return {
        "00080016": _el("UI", r["sop_class"]), "00080018": _el("UI", r["sop_uid"]),
        "00080060": _el("CS", r["modality"]),
        "00081190": _el("UR", f"{_base(request, patient)}/studies/{r['study_uid']}/series/{r['series_uid']}/instances/{r['sop_uid']}"),
        "0020000D": _el("UI", r["study_uid"]), "0020000E": _el("UI", r["series_uid"]),
        "00200013": _el("IS", r["number"]), "00280008": _el("IS", r["frames"]),
        "00280010": _el("US", r["rows"]), "00280011": _el("US", r["columns"]),
    }


def _date_matches(value: str, query: str) -> bool:
    query = query.replace("-", " - ", 1) if "-" in query else query
    if " - " in query:
        lo, hi = (p.strip() for p in query.split(" - ", 1))
        return bool(value) and (not lo or value >= lo) and (not hi or value <= hi)
    return value == query.strip()


def _param(request: Request, *names: str) -> str | None:
    for n in names:
        v = request.query_params.get(n)
        if v not in (None, ""):
            return v
    return None


def _page(request: Request, items: list) -> list:
    values = []
    for name, default in (("offset", 0), ("limit", MAX_RESULTS)):
        raw = request.query_params.get(name) or ""
        if raw and not re.fullmatch(r"[0-9]{1,9}", raw):
            raise HTTPException(status_code=400, detail="limit and offset are whole numbers from 0.")
        values.append(int(raw) if raw else default)
    offset, limit = values
    return items[offset: offset + min(limit, MAX_RESULTS)]


def _filter(request: Request, rows: list[dict]) -> list[dict]:
    study = _uid_list(request, "StudyInstanceUID", "0020000D")
    series = _uid_list(request, "SeriesInstanceUID", "0020000E")
    sop = _uid_list(request, "SOPInstanceUID", "00080018")
    modality = _param(request, "Modality", "00080060", "ModalitiesInStudy", "00080061")
    date = _param(request, "StudyDate", "00080020")
    out = []
    for r in rows:
        if study and r["study_uid"] not in study:
            continue
        if series and r["series_uid"] not in series:
            continue
        if sop and r["sop_uid"] not in sop:
            continue
        if modality and r["modality"] not in modality.split(",") and not (
                request.query_params.get("ModalitiesInStudy") and set(modality.split(",")) & set(r["modalities"].split(","))):
            continue
        if date and not _date_matches(r["study_date"], date):
            continue
        out.append(r)
    return out


def _group(rows: list[dict], key: str) -> list[list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r)
    return list(groups.values())


def _json(body) -> Response:
    return Response(body, media_type=DICOM_JSON, headers={"Cache-Control": "private, no-cache"})


# --- QIDO-RS --------------------------------------------------------------------------------------


async def _qido(request: Request, pseudonym: str, level: str, *, study: str | None = None,
                series: str | None = None) -> Response:
    patient, role = await _patient(request, pseudonym)
    rows = _filter(request, await _rows(patient, role, study=_uid(study), series=_uid(series)))
    if level == "studies":
        # A study's attributes come from all of its visible instances, not only the matching ones.
        by_study = _group(rows, "study_uid")
        out = []
        for g in by_study:
            every = await _rows(patient, role, study=g[0]["study_uid"])
            out.append(_study(request, patient, every))
    elif level == "series":
        out = [_series(request, patient, g) for g in _group(rows, "series_uid")]
    else:
        out = [_instance(request, patient, r) for r in rows]
    out = _page(request, out)
    await _audit(request, patient, role, "dicom.search", {"level": level, "results": len(out)})
    return _json(out)


@get(f"{ROOT}/studies", operation_id="qidoStudies", summary="QIDO-RS: search for studies", **QIDO)
async def search_studies(request: Request, pseudonym: Pseudonym) -> Response[list[DicomDataset]]:
    return await _qido(request, pseudonym, "studies")


@get(f"{ROOT}/series", operation_id="qidoSeries", summary="QIDO-RS: search for series", **QIDO)
async def search_all_series(request: Request, pseudonym: Pseudonym) -> Response[list[DicomDataset]]:
    return await _qido(request, pseudonym, "series")


@get(f"{ROOT}/instances", operation_id="qidoInstances", summary="QIDO-RS: search for instances", **QIDO)
async def search_all_instances(request: Request, pseudonym: Pseudonym) -> Response[list[DicomDataset]]:
    return await _qido(request, pseudonym, "instances")


@get(f"{ROOT}/studies/{{study:str}}/series", operation_id="qidoStudySeries", summary="QIDO-RS: search for a study's series", **QIDO)
async def search_series(request: Request, pseudonym: Pseudonym, study: UidPath) -> Response[list[DicomDataset]]:
    return await _qido(request, pseudonym, "series", study=study)


@get(f"{ROOT}/studies/{{study:str}}/instances", operation_id="qidoStudyInstances", summary="QIDO-RS: search for a study's instances", **QIDO)
async def search_study_instances(request: Request, pseudonym: Pseudonym, study: UidPath) -> Response[list[DicomDataset]]:
    return await _qido(request, pseudonym, "instances", study=study)


@get(f"{ROOT}/studies/{{study:str}}/series/{{series:str}}/instances", operation_id="qidoSeriesInstances",
     summary="QIDO-RS: search for a series' instances", **QIDO)
async def search_instances(request: Request, pseudonym: Pseudonym, study: UidPath, series: UidPath) -> Response[list[DicomDataset]]:
    return await _qido(request, pseudonym, "instances", study=study, series=series)


# --- WADO-RS --------------------------------------------------------------------------------------


def _accepts(request: Request, *kinds: str) -> bool:
    accept = request.headers.get("accept", "*/*").lower()
    return any(k in accept for k in kinds) or "*/*" in accept or accept.strip() == ""


async def _retrieve_rows(request, pseudonym, study, series=None, sop=None) -> tuple[dict, tuple, list[dict]]:
    patient, role = await _patient(request, pseudonym)
    rows = await _rows(patient, role, study=_uid(study), series=_uid(series), sop=_uid(sop))
    if not rows:
        raise NotFoundException("No such study, series or instance, or you may not see it.")
    return patient, role, rows


def _multipart(parts: AsyncIterator[bytes], part_type: str, boundary: str) -> AsyncIterator[bytes]:
    async def body():
        async for data in parts:
            yield (f"--{boundary}\r\nContent-Type: {part_type}\r\nContent-Length: {len(data)}\r\n\r\n").encode()
            yield data
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()
    return body()


async def _retrieve(request: Request, pseudonym: str, study: str, series: str | None = None,
                    sop: str | None = None) -> Response:
    if not _accepts(request, "application/dicom", "multipart/related"):
        raise NotAcceptable(detail='Ask for multipart/related; type="application/dicom".')
    patient, role, rows = await _retrieve_rows(request, pseudonym, study, series, sop)
    settings = request.app.state.settings
    await _audit(request, patient, role, "dicom.retrieve", {"instances": len(rows)})

    async def parts():
        for r in rows:
            # One decrypted file in memory at a time.
            yield await store.read_file(r, settings)

    boundary = secrets.token_hex(16)
    return Stream(_multipart(parts(), "application/dicom", boundary), media_type=(
        f'multipart/related; type="application/dicom"; boundary={boundary}'), headers={"Cache-Control": "private, no-store"})


@get(f"{ROOT}/studies/{{study:str}}", opt={"permission": VIEW}, include_in_schema=False)
async def retrieve_study(request: Request, pseudonym: FromPath[str], study: FromPath[str]) -> Response:
    return await _retrieve(request, pseudonym, study)


@get(f"{ROOT}/studies/{{study:str}}/series/{{series:str}}", opt={"permission": VIEW}, include_in_schema=False)
async def retrieve_series(request: Request, pseudonym: FromPath[str], study: FromPath[str], series: FromPath[str]) -> Response:
    return await _retrieve(request, pseudonym, study, series)


@get(f"{ROOT}/studies/{{study:str}}/series/{{series:str}}/instances/{{sop:str}}", opt={"permission": VIEW},
     include_in_schema=False)
async def retrieve_instance(request: Request, pseudonym: FromPath[str], study: FromPath[str], series: FromPath[str],
                            sop: FromPath[str]) -> Response:
    return await _retrieve(request, pseudonym, study, series, sop)


def _metadata(ds) -> dict:
    """The dataset as DICOM JSON without pixel and other bulk data (frames are their own resource)."""
    from pydicom.dataset import Dataset

    light = Dataset()
    for elem in ds:
        if elem.tag in (0x7FE00010, 0x7FE00008, 0x7FE00009) or (elem.VR in BULK_VRS and elem.value is not None
                                                                and len(elem.value) > 1024):
            continue
        light.add(elem)
    return light.to_json_dict(bulk_data_threshold=1 << 30, bulk_data_element_handler=lambda e: "")


async def _metadata_response(request: Request, pseudonym: str, study: str, series: str | None = None,
                             sop: str | None = None) -> Response:
    patient, role, rows = await _retrieve_rows(request, pseudonym, study, series, sop)
    settings = request.app.state.settings
    out = []
    for r in rows:
        ds = await store.dataset(r, settings)
        out.append(await to_thread.run_sync(_metadata, ds))
    await _audit(request, patient, role, "dicom.metadata", {"instances": len(rows)})
    return _json(out)


@get(f"{ROOT}/studies/{{study:str}}/metadata", operation_id="wadoStudyMetadata", summary="WADO-RS: a study's metadata", **METADATA)
async def study_metadata(request: Request, pseudonym: Pseudonym, study: UidPath) -> Response[list[DicomDataset]]:
    return await _metadata_response(request, pseudonym, study)


@get(f"{ROOT}/studies/{{study:str}}/series/{{series:str}}/metadata", operation_id="wadoSeriesMetadata",
     summary="WADO-RS: a series' metadata", **METADATA)
async def series_metadata(request: Request, pseudonym: Pseudonym, study: UidPath, series: UidPath) -> Response[list[DicomDataset]]:
    return await _metadata_response(request, pseudonym, study, series)


@get(f"{ROOT}/studies/{{study:str}}/series/{{series:str}}/instances/{{sop:str}}/metadata", operation_id="wadoInstanceMetadata",
     summary="WADO-RS: an instance's metadata", **METADATA)
async def instance_metadata(request: Request, pseudonym: Pseudonym, study: UidPath, series: UidPath,
                            sop: UidPath) -> Response[list[DicomDataset]]:
    return await _metadata_response(request, pseudonym, study, series, sop)


def _frame_list(text: str, count: int) -> list[int]:
    try:
        numbers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HTTPException(status_code=400, detail="Frames are numbers from 1, separated by commas.") from None
    if not numbers or len(numbers) > 1000:
        raise HTTPException(status_code=400, detail="Ask for 1 to 1000 frames.")
    if any(n < 1 or n > count for n in numbers):
        raise NotFoundException(f"This instance has {count} frame(s), numbered from 1.")
    return numbers


@get(f"{ROOT}/studies/{{study:str}}/series/{{series:str}}/instances/{{sop:str}}/frames/{{numbers:str}}",
     opt={"permission": VIEW}, include_in_schema=False)
async def retrieve_frames(request: Request, pseudonym: FromPath[str], study: FromPath[str], series: FromPath[str],
                          sop: FromPath[str], numbers: FromPath[str]) -> Response:
    """Native pixels of the frames, decoded on the server: Explicit VR Little Endian byte order."""
    accept = request.headers.get("accept", "*/*").lower()
    if not ("application/octet-stream" in accept or "*/*" in accept or "*" in accept or "1.2.840.10008.1.2.1" in accept):
        raise NotAcceptable(detail='Frames are offered as multipart/related; type="application/octet-stream" only.')
    patient, role, rows = await _retrieve_rows(request, pseudonym, study, series, sop)
    r = rows[0]
    wanted = _frame_list(numbers, int(r["frames"] or 1))
    ds = await store.dataset(r, request.app.state.settings)

    def decode(n: int) -> bytes:
        arr, _ = render.decode_frame(ds, n - 1)
        if not arr.dtype.isnative or arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        return arr.tobytes()

    # Every frame is decoded before the answer starts: once the 200 and the first part are sent, a
    # frame that cannot be decoded could only end the multipart body early, silently. Frames are held
    # up to FRAME_BUFFER bytes; past it they are decoded again while streaming (known to decode).
    decoded: list[bytes | None] = []
    held = 0
    for n in wanted:
        try:
            data = await to_thread.run_sync(decode, n, limiter=frames.limiter())
        except Exception as exc:  # noqa: BLE001 - any decoding failure is answered, never a cut body
            reason = str(exc) if isinstance(exc, render.UnsupportedPixelData) else type(exc).__name__
            return _problem(406, "A frame cannot be decoded", (
                f"Frame {n} of this instance cannot be decoded to native pixels here ({reason}). Retrieve "
                f"the instance itself (application/dicom), or its rendered frames, instead."), frame=n)
        held += len(data)
        decoded.append(data if held <= FRAME_BUFFER else None)

    async def parts():
        for n, data in zip(wanted, decoded):
            yield data if data is not None else await to_thread.run_sync(decode, n, limiter=frames.limiter())

    await _audit(request, patient, role, "dicom.frames", {"instance": r["id"], "frames": len(wanted)})
    boundary = secrets.token_hex(16)
    part_type = "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    return Stream(_multipart(parts(), part_type, boundary), media_type=(
        f'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1; boundary={boundary}'),
        headers={"Cache-Control": "private, no-store"})


def _rendered_options(request: Request) -> dict:
    accept = request.headers.get("accept", "image/jpeg").lower()
    fmt = "png" if "image/png" in accept else "webp" if "image/webp" in accept else "jpeg"
    if not any(t in accept for t in ("image/jpeg", "image/png", "image/webp", "image/*", "*/*")):
        raise NotAcceptable(detail="Rendered images are offered as image/jpeg, image/png or image/webp.")
    params = {"format": fmt, "quality": request.query_params.get("quality")}
    window = request.query_params.get("window")
    if window:
        parts = window.split(",")
        if len(parts) < 2:
            raise HTTPException(status_code=400, detail="window is center,width[,function].")
        params["wc"], params["ww"] = parts[0], parts[1]
    try:
        return frames.parse_options(params)
    except frames.BadFrameRequest as exc:
        raise HTTPException(status_code=400, detail=exc.detail) from exc


async def _rendered(request: Request, pseudonym: str, study: str, series: str, sop: str, frame: int) -> Response:
    opts = _rendered_options(request)
    patient, role, rows = await _retrieve_rows(request, pseudonym, study, series, sop)
    r = rows[0]
    if frame < 1 or frame > int(r["frames"] or 1):
        raise NotFoundException(f"This instance has {r['frames']} frame(s), numbered from 1.")
    data = await frames.rendered_bytes(r, frame - 1, opts, request.app.state.settings)
    await _audit(request, patient, role, "dicom.rendered", {"instance": r["id"], "frame": frame})
    return Response(data, media_type=render.MEDIA_TYPES[opts["format"]], headers={"Cache-Control": "private, max-age=300"})


@get(f"{ROOT}/studies/{{study:str}}/series/{{series:str}}/instances/{{sop:str}}/rendered", opt={"permission": VIEW},
     include_in_schema=False)
async def instance_rendered(request: Request, pseudonym: FromPath[str], study: FromPath[str], series: FromPath[str],
                            sop: FromPath[str]) -> Response:
    return await _rendered(request, pseudonym, study, series, sop, 1)


@get(f"{ROOT}/studies/{{study:str}}/series/{{series:str}}/instances/{{sop:str}}/frames/{{frame:int}}/rendered",
     opt={"permission": VIEW}, include_in_schema=False)
async def frame_rendered(request: Request, pseudonym: FromPath[str], study: FromPath[str], series: FromPath[str],
                         sop: FromPath[str], frame: FromPath[int]) -> Response:
    return await _rendered(request, pseudonym, study, series, sop, frame)


# --- STOW-RS --------------------------------------------------------------------------------------


def _split_parts(path, boundary: bytes, folder, limit: int) -> list[tuple[object, str]]:
    """The parts of a multipart/related body saved on disk, each written to its own file (read through
    a memory map: the body is never held in memory). Parts other than application/dicom are refused."""
    import mmap

    out = []
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return out
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            marker = b"--" + boundary
            pos = mm.find(marker)
            if pos < 0:
                raise store.IngestError("The multipart body holds no part (boundary not found).", 400)
            n = 0
            while True:
                pos += len(marker)
                if mm[pos:pos + 2] == b"--":
                    break
                head_end = mm.find(b"\r\n\r\n", pos)
                if head_end < 0:
                    raise store.IngestError("A part of the multipart body has no headers' end.", 400)
                headers = bytes(mm[pos:head_end]).decode("latin-1").lower()
                start = head_end + 4
                nxt = mm.find(b"\r\n" + marker, start)
                if nxt < 0:
                    raise store.IngestError("The multipart body was cut short.", 400)
                ctype = next((h.split(":", 1)[1].strip() for h in headers.split("\r\n") if h.startswith("content-type:")),
                             "application/dicom")
                if not ctype.startswith("application/dicom") or ctype.startswith("application/dicom+"):
                    raise store.IngestError("STOW-RS here takes application/dicom parts only.", 415)
                n += 1
                target = folder / "in" / f"part-{n:05d}.dcm"
                with open(target, "xb") as out_fh:
                    os.chmod(target, 0o600)
                    for block in range(start, nxt, 1 << 20):
                        out_fh.write(mm[block:min(block + (1 << 20), nxt)])
                out.append((target, f"part {n}"))
                pos = nxt + 2
    return out


STOW_BODY = {"type": "string", "format": "binary",
             "description": 'multipart/related; type="application/dicom"; boundary=...: one DICOM instance per part.'}


@post(f"{ROOT}/studies", opt={"permission": UPLOAD}, request_max_body_size=HARD_MAX_BODY, operation_id="stowStudies",
      summary="STOW-RS: store instances", tags=["DICOMweb"], media_type=DICOM_JSON, status_code=200,
      operation_class=operation(body=STOW_BODY, body_media_types=("multipart/related",)),
      responses={**problems(s403="Only the enrolling hospital adds images, or the CSRF token is missing or wrong.",
                            s409="None of the instances was stored (the failures are listed), or processing of this record "
                                 "is restricted (GDPR).",
                            s415='Not multipart/related; type="application/dicom", or a part of another type.'),
                 202: ResponseSpec(data_container=dict[str, DicomAttribute], media_type=DICOM_JSON, generate_examples=False,
                                   description="Some instances were stored, some not (the failures are listed).")})
async def store_instances(request: Request, pseudonym: Pseudonym) -> Response[dict[str, DicomAttribute]]:
    """The PS3.18 store response: ReferencedSOPSequence (00081199) lists what was stored, with the de-identified
    UIDs; FailedSOPSequence (00081198) what was not, with a reason. 200 all stored, 202 some, 409 none."""
    from core.events import Event
    from core.identity.login import client_address

    patient, role = await _patient(request, pseudonym)
    actor = request.scope["user"]
    if not role[0] or not allowed(actor, UPLOAD):
        raise PermissionDeniedException("Only the enrolling hospital adds images.")
    if patient["restricted"]:
        raise HTTPException(status_code=409, detail="Processing of this record is restricted (GDPR).")
    content_type, options = request.content_type
    boundary = options.get("boundary")
    if content_type != "multipart/related" or not boundary:
        raise HTTPException(status_code=415, detail='Send multipart/related; type="application/dicom".')
    kind = options.get("type", "application/dicom").strip('"').lower()
    if kind != "application/dicom":
        raise HTTPException(status_code=415, detail="Only application/dicom instances are accepted (no JSON/XML + bulk data).")
    settings = request.app.state.settings
    store.remember_settings(settings)
    limit = store.config(settings).max_upload_bytes
    folder = await to_thread.run_sync(store.new_folder, settings)
    try:
        raw = folder / "body"
        sink = await to_thread.run_sync(store._Sink, raw, [0], limit)
        try:
            async for chunk in request.stream():
                await to_thread.run_sync(sink.write, chunk)
        finally:
            sink.close()
        try:
            parts = await to_thread.run_sync(_split_parts, raw, boundary.encode("latin-1"), folder, limit)
        except store.IngestError as exc:
            raise HTTPException(status_code=exc.status, detail=exc.message) from exc
        await to_thread.run_sync(raw.unlink)
        if not parts:
            raise HTTPException(status_code=400, detail="The request holds no instance.")
        received = store.Received(folder, parts=parts)
        try:
            outcome = await store.ingest(
                settings, patient, received, actor.user_id,
                audit=lambda done: _audit(request, patient, role, "dicom.upload", {
                    "upload": done.upload_id, "stored": done.stored, "counts": done.counts}),
            )
        except store.IngestError as exc:
            raise HTTPException(status_code=exc.status, detail=exc.message) from exc
    finally:
        # Synchronous on purpose: an await here would be cancelled with the request, leaving the
        # original files behind.
        store.discard(folder)
    if outcome.stored:
        await request.app.state.host.events.emit(Event(
            "dicom.study_uploaded", actor.user_id, "patient", patient["pseudonym"],
            {"upload": outcome.upload_id, "instances": outcome.stored}, client_address(request)))
    return await _stow_response(request, patient, outcome)


async def _stow_response(request: Request, patient: dict, outcome: store.Outcome) -> Response:
    from plugins.dicom_viewer.tables import Instance

    ids = [r["instance"] for r in outcome.results if r.get("instance")]
    by_id = {}
    if ids:
        for row in await Instance.select(
                Instance.id, Instance.sop_uid, Instance.sop_class, Instance.series.series_uid.as_alias("series_uid"),
                Instance.series.study.study_uid.as_alias("study_uid")).where(Instance.id.is_in(ids)):
            by_id[row["id"]] = row
    referenced, failed = [], []
    for r in outcome.results:
        row = by_id.get(r.get("instance"))
        if row is not None:
            referenced.append({
                "00081150": _el("UI", row["sop_class"]), "00081155": _el("UI", row["sop_uid"]),
                "00081190": _el("UR", f"{_base(request, patient)}/studies/{row['study_uid']}/series/{row['series_uid']}/instances/{row['sop_uid']}"),
            })
        else:
            reason = {files.DUPLICATE: FAIL_DUPLICATE, files.NOT_DICOM: FAIL_NOT_DICOM}.get(r["status"], FAIL_PROCESSING)
            failed.append({"00081150": _el("UI", r.get("sop_class_uid", "")), "00081155": _el("UI", r.get("sop_instance_uid", "")),
                           "00081197": _el("US", reason)})
    body: dict = {}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    status = 200 if referenced and not failed else 202 if referenced else 409
    return Response(body, status_code=status, media_type=DICOM_JSON)


ROUTES = [search_studies, search_all_series, search_all_instances, search_series, search_study_instances,
          search_instances, retrieve_study, retrieve_series, retrieve_instance, study_metadata, series_metadata,
          instance_metadata, retrieve_frames, instance_rendered, frame_rendered, store_instances]
