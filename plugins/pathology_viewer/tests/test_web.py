"""The slides' pages through the HTTP app: the patient section (list, hide from panels, delete with
confirmation), the panel section, the facts page, who sees what (404 for anyone else), restricted
records, erasure and the GDPR export, audit entries, and the demo slide."""

from __future__ import annotations

import json

from plugins.pathology_viewer import access
from plugins.pathology_viewer.tests.support import (
    HX, JSON, generic_tiff, home, panel_member, slide_row, stored_state, svs, upload,
)
from tests.conftest import csrf_of, login, make_user, post_form


async def with_slide(client, path=None, title="H&E block A2") -> tuple[dict, int]:
    s = await home(client)
    r = await upload(client, s, path or generic_tiff(), title=title, headers=JSON)
    assert r.status_code == 201, r.text[:300]
    return s, r.json()["id"]


async def test_patient_section_lists_slides_with_thumbnail_facts_and_actions(client):
    s, sid = await with_slide(client)
    r = await client.get(s["base"], headers=HX)
    assert r.status_code == 200 and "<html" not in r.text
    assert f'src="/pathology/slides/{sid}/thumbnail.jpg"' in r.text
    assert f'href="/pathology/slides/{sid}/view"' in r.text
    assert "H&amp;E block A2" in r.text and "2,048 × 1,536" in r.text and "4 levels" in r.text
    assert 'id="slide-upload-form"' in r.text and 'id="slide-upload-progress"' in r.text
    assert f'/pathology/slides/{sid}/hidden' in r.text and f'/pathology/slides/{sid}/delete' in r.text
    full = await client.get(s["base"])
    assert full.status_code == 200 and "<html" in full.text and 'id="pathology-section"' in full.text
    form = await client.get(s["base"] + "/upload")
    assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text


async def test_section_is_offered_on_the_patient_and_panel_pages(client):
    s, sid = await with_slide(client)
    page = await client.get(f"/patients/{s['patient']['pseudonym']}")
    assert page.status_code == 200 and f'hx-get="/pathology/patients/{s["patient"]["pseudonym"]}"' in page.text
    from tests.panels_support import make_panel

    panel = await make_panel(s["patient"], s["hp"])
    r = await client.get(f"/panels/{panel}")
    assert r.status_code == 200 and f'/pathology/panels/{panel}' in r.text


async def test_hide_from_panels_toggle(client):
    s, sid = await with_slide(client)
    member = await make_user("expert@example.org", hcp="Faraway Hospital")
    from tests.panels_support import make_panel

    panel = await make_panel(s["patient"], s["hp"], members=(member,))
    r = await post_form(client, f"/pathology/slides/{sid}/hidden", {"hidden": "1"}, headers=HX)
    assert r.status_code == 200 and "Show to panels" in r.text and "hidden from panels" in r.text
    assert (await slide_row(sid))["hidden_from_panels"] is True
    home_panel = await client.get(f"/pathology/panels/{panel}")
    assert "1 slide of this patient is hidden" in home_panel.text and f'data-slide="{sid}"' not in home_panel.text
    await login(client, "expert@example.org")
    assert (await client.get(f"/pathology/slides/{sid}/image_files/0/0_0.jpeg")).status_code == 404
    section = await client.get(f"/pathology/panels/{panel}")
    assert section.status_code == 200 and f'data-slide="{sid}"' not in section.text
    await login(client, "home@example.org")
    r = await post_form(client, f"/pathology/slides/{sid}/hidden", {"hidden": "0"})
    assert r.status_code == 303 and (await slide_row(sid))["hidden_from_panels"] is False
    await login(client, "expert@example.org")
    assert (await client.get(f"/pathology/slides/{sid}/image_files/0/0_0.jpeg")).status_code == 200
    assert f'data-slide="{sid}"' in (await client.get(f"/pathology/panels/{panel}")).text


async def test_delete_needs_confirmation_and_removes_row_file_and_copy(client, settings):
    from core.audit.tables import AuditEntry
    from plugins.pathology_viewer import slides
    from plugins.pathology_viewer.tables import Annotation

    s, sid = await with_slide(client, svs())
    row = await slide_row(sid)
    await Annotation(slide=sid, author=s["hp"], kind="point", geometry={"points": [[1, 2]]}).save()
    confirm = await client.get(f"/pathology/slides/{sid}/delete")
    assert confirm.status_code == 200 and 'name="confirm"' in confirm.text
    r = await post_form(client, f"/pathology/slides/{sid}/delete", {})
    assert r.status_code == 422 and await slide_row(sid) is not None
    r = await post_form(client, f"/pathology/slides/{sid}/delete", {"confirm": "yes"})
    assert r.status_code == 303 and await slide_row(sid) is None
    assert await Annotation.count() == 0
    assert not (settings.data_dir / "files" / row["file_key"]).exists()
    assert not (slides.cache_root(settings) / slides.copy_name(row["file_key"])).exists()
    assert (await client.get(f"/pathology/slides/{sid}/image_files/0/0_0.jpeg")).status_code == 404
    assert await AuditEntry.count().where(AuditEntry.action == "pathology.delete") == 1


async def test_a_file_shared_by_two_patients_stays_until_the_last_row_goes(client, settings):
    from tests.panels_support import make_patient

    s, sid = await with_slide(client)
    other = await make_patient(s["patient"]["hcp"])
    r = await upload(client, {"base": f"/pathology/patients/{other['pseudonym']}"}, generic_tiff(), headers=JSON)
    assert r.status_code == 201
    key = (await slide_row(sid))["file_key"]
    assert (await slide_row(r.json()["id"]))["file_key"] == key
    await post_form(client, f"/pathology/slides/{sid}/delete", {"confirm": "yes"})
    assert (settings.data_dir / "files" / key).exists()
    assert (await client.get(f"/pathology/slides/{r.json()['id']}/image_files/0/0_0.jpeg")).status_code == 200


async def test_facts_page_for_home_and_member(client):
    s, sid = await with_slide(client, svs(), title="PAS stain")
    r = await client.get(f"/pathology/slides/{sid}")
    assert r.status_code == 200 and "aperio" in r.text and "0.4990" in r.text and "20×" in r.text
    assert f"/pathology/slides/{sid}/associated/label.jpg" in r.text and "Label and overview images" in r.text
    assert (await client.get(f"/pathology/slides/{sid}/associated/macro.jpg")).status_code == 200
    assert (await client.get(f"/pathology/slides/{sid}/associated/nothing.jpg")).status_code == 404
    member = await panel_member(client, s)
    r = await client.get(f"/pathology/slides/{sid}")
    assert r.status_code == 200 and "PAS stain" in r.text and "associated" not in r.text
    assert f'href="/panels/{member["panel"]}' in r.text
    assert s["patient"]["nickname"] in r.text


async def test_panel_section_for_member_and_invitee(client):
    s, sid = await with_slide(client)
    await panel_member(client, s)
    from core.panels.tables import Panel

    panel = (await Panel.select(Panel.id).first())["id"]
    r = await client.get(f"/pathology/panels/{panel}")
    assert r.status_code == 200 and f'data-slide="{sid}"' in r.text and f"/pathology/slides/{sid}/view" in r.text
    assert "Upload" not in r.text and "/hidden" not in r.text
    await panel_member(client, s, "invitee@example.org", accepted=False)
    assert (await client.get(f"/pathology/panels/{panel}")).status_code in (403, 404)


async def test_non_member_and_other_hospital_get_404_everywhere(client):
    s, sid = await with_slide(client)
    await make_user("stranger@example.org", hcp="Stranger Hospital")
    await login(client, "stranger@example.org")
    for url in (f"/pathology/slides/{sid}", f"/pathology/slides/{sid}/image.dzi",
                f"/pathology/slides/{sid}/image_files/0/0_0.jpeg", f"/pathology/slides/{sid}/thumbnail.jpg",
                f"/pathology/iiif/{sid}/info.json", f"/pathology/slides/{sid}/associated/label.jpg",
                s["base"], f"/pathology/slides/{sid}/delete", f"/pathology/slides/{sid + 1}"):
        r = await client.get(url)
        assert r.status_code == 404, (url, r.status_code)
    r = await post_form(client, f"/pathology/slides/{sid}/hidden", {"hidden": "1"})
    assert r.status_code in (403, 404) and (await slide_row(sid))["hidden_from_panels"] is False


async def test_member_cannot_change_a_slide(client):
    s, sid = await with_slide(client)
    await panel_member(client, s)
    r = await post_form(client, f"/pathology/slides/{sid}/hidden", {"hidden": "1"})
    assert r.status_code in (403, 404) and (await slide_row(sid))["hidden_from_panels"] is False
    r = await post_form(client, f"/pathology/slides/{sid}/delete", {"confirm": "yes"})
    assert r.status_code in (403, 404) and await slide_row(sid) is not None


async def test_access_decision_is_cached_briefly_and_forgotten_on_change(client):
    s, sid = await with_slide(client)
    assert (await client.get(f"/pathology/slides/{sid}/image_files/0/0_0.jpeg")).status_code == 200
    assert any(k[-1] == sid for k in access._cache)
    await post_form(client, f"/pathology/slides/{sid}/hidden", {"hidden": "1"})
    assert not any(k[-1] == sid for k in access._cache)


async def test_restricted_record_cannot_be_changed(client):
    from core.patients.tables import Patient

    s, sid = await with_slide(client)
    await Patient.update({Patient.restricted: True}).where(Patient.id == s["patient"]["id"])
    access.forget()
    r = await client.get(s["base"], headers=HX)
    assert r.status_code == 200 and 'id="slide-upload-form"' not in r.text and "/hidden" not in r.text
    r = await post_form(client, f"/pathology/slides/{sid}/hidden", {"hidden": "1"})
    assert r.status_code == 409
    r = await upload(client, s, svs(), headers=JSON)
    assert r.status_code == 409


async def test_erasure_removes_slides_files_and_working_copies(client, settings):
    from core.events import Event
    from plugins.pathology_viewer import slides

    s, sid = await with_slide(client, svs())
    row = await slide_row(sid)
    before = await stored_state(settings)
    # what the core does after carrying out an erasure: plugins hear "patient.erased"
    from core.app import create_app

    app = create_app(settings)
    await app.state.host.events.emit(Event("patient.erased", s["hp"], "patient", s["patient"]["pseudonym"], {}))
    after = await stored_state(settings)
    assert after["rows"] == 0 and before["files"] - after["files"] == 1 and before["copies"] - after["copies"] == 1
    assert not (settings.data_dir / "files" / row["file_key"]).exists()
    assert not (slides.cache_root(settings) / slides.copy_name(row["file_key"])).exists()


async def test_gdpr_export_holds_the_slides(client):
    s, sid = await with_slide(client, svs())
    from core.patients.access import PatientRef
    from plugins.pathology_viewer import gdpr_export

    out = await gdpr_export(PatientRef(s["patient"]["id"], s["patient"]["pseudonym"], "", s["patient"]["hcp"]))
    assert [x["id"] for x in out["slides"]] == [sid]
    assert out["slides"][0]["vendor"] == "aperio" and "label" in out["slides"][0]["associated_images"]
    json.dumps(out)  # serialisable
    r = await client.get(f"/patients/{s['patient']['pseudonym']}/export.json")
    if r.status_code == 200:
        assert "pathology_viewer" in r.text


async def test_reads_are_audited_not_each_tile(client):
    from core.audit.tables import AuditEntry

    s, sid = await with_slide(client)
    await client.get(f"/pathology/slides/{sid}/image.dzi")
    for i in range(3):
        await client.get(f"/pathology/slides/{sid}/image_files/9/{i}_0.jpeg")
    await client.get(f"/pathology/slides/{sid}")
    views = await AuditEntry.select(AuditEntry.action, AuditEntry.detail).where(AuditEntry.action.like("pathology.%"))
    actions = [v["action"] for v in views]
    assert actions.count("pathology.view") == 1 and "pathology.facts" in actions and "pathology.upload" in actions


async def test_demo_gives_the_first_patient_a_slide(client, demo, settings):
    from core.identity import DEMO_PASSWORD
    from plugins.pathology_viewer.tables import Slide
    from tests.conftest import enrol_totp

    first = demo.patients[0]
    rows = await Slide.select()
    assert len(rows) == 1 and rows[0]["vendor"] == "generic-tiff" and rows[0]["width"] == 4096
    await enrol_totp(demo.users["hp"])
    r = await login(client, "hp@demo.cpms.eu", DEMO_PASSWORD.format(role="hp"))
    assert r.status_code in (302, 303)
    section = await client.get(f"/pathology/patients/{first}", headers=HX)
    assert section.status_code == 200 and "synthetic demo slide" in section.text
    tile = await client.get(f"/pathology/slides/{rows[0]['id']}/image_files/12/0_0.jpeg")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"


async def test_upload_csrf_is_required(client, settings):
    s = await home(client)
    before = await stored_state(settings)
    r = await client.post(f"{s['base']}/slides", files={"file": ("x.tiff", generic_tiff().read_bytes())},
                          headers={"x-csrftoken": "forged"})
    assert r.status_code == 403
    assert (await stored_state(settings))["rows"] == before["rows"] == 0
    assert csrf_of(client)
