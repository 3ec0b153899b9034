"""Shared set-up of the pathology tests: a hospital with a patient, a logged-in clinician, slides written
by ``slidegen`` (cached per test run), uploads through the HTTP app, and what is stored (rows, files)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest

from plugins.pathology_viewer.tests import slidegen
from tests.conftest import csrf_of, login, make_user
from tests.panels_support import hcp_of, make_panel, make_patient

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "slides"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="sample slides (../shared/data/slides) not present")
HX = {"HX-Request": "true"}
JSON = {"Accept": "application/json"}

_made = Path(tempfile.mkdtemp(prefix="cpms-slides-"))


@functools.cache
def generic_tiff() -> Path:
    return slidegen.write_generic_tiff(_made / "tissue.tiff")


@functools.cache
def svs() -> Path:
    return slidegen.write_svs(_made / "Doe_John_123.svs")


def scratch(name: str) -> Path:
    return _made / name


async def home(client, email: str = "home@example.org", hospital: str = "Home Hospital") -> dict:
    hp = await make_user(email, hcp=hospital)
    patient = await make_patient(await hcp_of(hp))
    r = await login(client, email)
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login"), r.text[:300]
    return {"hp": hp, "patient": patient, "base": f"/pathology/patients/{patient['pseudonym']}"}


async def upload(client, s: dict, path: Path | None = None, *, data: bytes | None = None, name: str | None = None,
                 title: str = "H&E block A2", stream: bool = True, headers: dict | None = None):
    """Post a slide file; ``stream`` sends the CSRF token as a header (the streaming parser, as the
    progress-bar script does), otherwise in the form (parsed by Litestar's CSRF check first)."""
    body = data if data is not None else Path(path).read_bytes()
    form = {"title": title}
    hdrs = dict(headers or {})
    if stream:
        hdrs["x-csrftoken"] = csrf_of(client)
    else:
        form["_csrf_token"] = csrf_of(client)
    return await client.post(f"{s['base']}/slides", data=form, files={"file": (name or Path(path).name, body)},
                             headers=hdrs, follow_redirects=False)


async def stored_state(settings) -> dict:
    """Rows, files in the encrypted store, working copies and leftovers of uploads in progress."""
    from plugins.pathology_viewer import slides
    from plugins.pathology_viewer.tables import Slide

    root = Path(settings.data_dir)
    files = [p for p in (root / "files").rglob("*") if p.is_file()] if (root / "files").is_dir() else []
    cache = slides.cache_root(settings)
    return {
        "rows": await Slide.count(),
        "files": len([p for p in files if not p.name.startswith(".upload-")]),
        "temp": len([p for p in files if p.name.startswith(".upload-")]),
        "copies": len([p for p in cache.iterdir() if not p.name.startswith(slides.INCOMING_PREFIX)]),
        "incoming": len([p for p in cache.iterdir() if p.name.startswith(slides.INCOMING_PREFIX)]),
    }


async def slide_row(slide_id: int) -> dict:
    from plugins.pathology_viewer.tables import Slide

    return await Slide.select().where(Slide.id == slide_id).first()


async def panel_member(client, s: dict, email: str = "expert@example.org", *, accepted: bool = True) -> dict:
    """Another hospital's expert in an open panel about the patient, logged in on ``client``."""
    expert = await make_user(email, hcp="Faraway Hospital")
    panel = await make_panel(s["patient"], s["hp"], members=(expert,) if accepted else (),
                             invited=() if accepted else (expert,))
    r = await login(client, email)
    assert r.status_code in (302, 303), r.text[:300]
    return {"user": expert, "panel": panel}
