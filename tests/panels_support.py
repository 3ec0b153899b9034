"""Building blocks for panel tests: patients and panels written straight to the database,
so a test about (say) meetings does not have to walk the whole lifecycle first."""

from __future__ import annotations


from tests.conftest import make_settings

IDENTITY = {
    "given_name": "Zygmunt", "family_name": "Quarrington", "date_of_birth": "1990-04-12",
    "local_record_number": "MRN-778812", "national_id": "", "email": "", "phone": "", "address": "",
}


async def ern_id(acronym: str = "ERN RND") -> int:
    from core.orgs.tables import Ern

    return (await Ern.select(Ern.id).where(Ern.acronym == acronym).first())["id"]


async def hcp_of(user_id: int) -> int:
    from core.identity.tables import User

    return (await User.select(User.hcp).where(User.id == user_id).first())["hcp"]


async def make_patient(hcp_id: int, ern: str = "ERN RND", identity: dict | None = None) -> dict:
    """An enrolled patient (with Consent for Care) of hospital ``hcp_id``."""
    from datetime import date

    from core.patients import identity as ident
    from core.patients.nicknames import unique_nickname
    from core.patients.tables import Consent, Patient, PatientErn

    pseudonym = ident.new_pseudonym()
    row = Patient(
        pseudonym=pseudonym, nickname=await unique_nickname(), hcp=hcp_id,
        identity=ident.encrypt_identity(make_settings(), pseudonym, identity or IDENTITY), sex="female",
        summary="Progressive gait ataxia since age 14.",
    )
    await row.save()
    await PatientErn.insert(PatientErn(patient=row.id, ern=await ern_id(ern)))
    await Consent.insert(Consent(patient=row.id, kind="care", status="given", date=date(2026, 1, 5), form_version="v1"))
    return {"id": row.id, "pseudonym": pseudonym, "nickname": row.nickname, "hcp": hcp_id}


async def make_panel(
    patient: dict, creator: int, *, ern: str = "ERN RND", status: str = "open", members=(), invited=(),
    lead: int | None = None, urgency: str = "routine", title: str = "Ataxia with unclear genetics",
) -> int:
    """A panel in ``status`` with accepted ``members`` and pending ``invited`` user ids."""
    from core.panels.tables import Panel, PanelMember

    panel = Panel(
        patient=patient["id"], ern=await ern_id(ern), status=status, title=title,
        question="Which diagnosis explains the progressive ataxia, and which test next?", kind="diagnostic",
        urgency=urgency, created_by=creator, lead=lead or creator, form_template=None,
        form_answers="{}", form_label="Default form v1",
    )
    await panel.save()
    rows = [PanelMember(panel=panel.id, user=u, role="member", status="accepted") for u in members]
    rows += [PanelMember(panel=panel.id, user=u, role="member", status="invited") for u in invited]
    if rows:
        await PanelMember.insert(*rows)
    return panel.id


async def revision(panel_id: int) -> str:
    from core.panels.tables import Panel

    return str((await Panel.select(Panel.revision).where(Panel.id == panel_id).first())["revision"])
