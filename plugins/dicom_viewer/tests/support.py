"""Shared set-up of the DICOM web tests: a hospital with a patient, a logged-in clinician, synthetic
studies (``synthetic``, with identifying markers), uploads through the HTTP app, panel members, and
what is stored (rows, files)."""

from __future__ import annotations

import functools
import io
import tempfile
import zipfile
from pathlib import Path

from plugins.dicom_viewer import synthetic
from tests.conftest import csrf_of, login, make_user
from tests.panels_support import hcp_of, make_panel, make_patient

HX = {"HX-Request": "true"}
JSON = {"Accept": "application/json"}

_made = Path(tempfile.mkdtemp(prefix="cpms-dicom-"))


def ct_paths(n: int = 4, size: int = 64) -> tuple[Path, ...]:
    return _ct_paths(n, size)


@functools.cache
def _ct_paths(n: int, size: int) -> tuple[Path, ...]:
    folder = _made / f"ct-{n}-{size}"
    folder.mkdir()
    return tuple(synthetic.ct_series(folder, n=n, size=size))


def ct_zip(n: int = 4, size: int = 64) -> bytes:
    return _ct_zip(n, size)


@functools.cache
def _ct_zip(n: int, size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in ct_paths(n, size):
            zf.write(p, f"STUDY/{p.name}")
    return buf.getvalue()


@functools.cache
def us_path() -> Path:
    return synthetic.us_rgb(_made / "us.dcm")


@functools.cache
def multiframe_path() -> Path:
    return synthetic.multiframe(_made / "mf.dcm", frames=6, size=32)


@functools.cache
def cr_path() -> Path:
    return synthetic.cr_monochrome1(_made / "cr.dcm", size=64)


async def home(client, email: str = "home@example.org", hospital: str = "Home Hospital") -> dict:
    hp = await make_user(email, hcp=hospital)
    patient = await make_patient(await hcp_of(hp))
    r = await login(client, email)
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login"), r.text[:300]
    return {"hp": hp, "patient": patient, "base": f"/dicom/patients/{patient['pseudonym']}"}


async def upload(client, s: dict, items: list[tuple[str, bytes]], *, stream: bool = True, headers: dict | None = None):
    """Post files (name, bytes) in the field ``files``; ``stream`` sends the CSRF token as a header
    (the streaming parser, as the progress-bar script does), otherwise in the form."""
    hdrs = dict(headers or {})
    data = {}
    if stream:
        hdrs["x-csrftoken"] = csrf_of(client)
    else:
        data["_csrf_token"] = csrf_of(client)
    return await client.post(f"{s['base']}/uploads", data=data, files=[("files", (n, b)) for n, b in items],
                             headers=hdrs, follow_redirects=False)


async def upload_ct(client, s: dict, n: int = 4, size: int = 64) -> dict:
    r = await upload(client, s, [("study.zip", ct_zip(n, size))], headers=JSON)
    assert r.status_code == 201, r.text[:500]
    return r.json()


async def rows() -> dict:
    from plugins.dicom_viewer.tables import Instance, Series, Study, Upload

    return {"studies": await Study.count(), "series": await Series.count(), "instances": await Instance.count(),
            "uploads": await Upload.count()}


def stored_files(settings) -> list[Path]:
    root = Path(settings.data_dir) / "files"
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".upload-")] if root.is_dir() else []


async def instances(patient_id: int | None = None) -> list[dict]:
    from plugins.dicom_viewer.tables import Instance

    q = Instance.select()
    if patient_id is not None:
        q = q.where(Instance.series.study.patient == patient_id)
    return await q.order_by(Instance.id)


async def panel_member(client, s: dict, email: str = "expert@example.org", *, accepted: bool = True) -> dict:
    """Another hospital's expert in an open panel about the patient, logged in on ``client``."""
    expert = await make_user(email, hcp="Faraway Hospital")
    panel = await make_panel(s["patient"], s["hp"], members=(expert,) if accepted else (),
                             invited=() if accepted else (expert,))
    r = await login(client, email)
    assert r.status_code in (302, 303), r.text[:300]
    return {"user": expert, "panel": panel}
