"""What each consent allows: the one table every use of a patient's data is checked against.

Consent history is append-only; the newest row of each kind is the current status (``given``,
``refused`` or ``withdrawn``; a kind never recorded counts as not given, except where a rule
below says otherwise). A change takes effect on the next request, in every process, because the
rules are evaluated against the database, never remembered.

| use | allowed while | where it is enforced |
|---|---|---|
| ``record``: the enrolling hospital keeps and reads the record | always (medical records are kept by law; identity stays with the hospital) | ``core.patients.access.load_patient`` |
| ``panels``: anyone outside the enrolling hospital sees the patient's data (panel pages, shared record, outcome, every plugin section, images, slides, share links); a panel is submitted, opened or discussed | care is *given* and sharing is not *refused* or *withdrawn* (sharing within the ERN is part of Consent for Care unless the patient refused it separately) | ``core.panels.access.load_panel`` and ``is_accepted_member`` (every plugin asks them), ``patient_shareable`` for share links |
| ``registry``: the patient's anonymised data in ERN registries and the research section | registry is *given* | the research plugin (``allowed(consents, "registry")``) |
| ``research_contact``: the patient may be contacted about studies | research is *given* | the research plugin |

While the panel rule fails, the patient's open panels are *suspended*: members outside the
enrolling hospital get a 403 page that says why; the enrolling hospital still sees the panel
and may cancel or close it; nothing else moves. Consent given again lifts the suspension.
"""

from __future__ import annotations

#: use -> (required kinds that must be "given", kinds that must not be "refused"/"withdrawn")
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "record": ((), ()),
    "panels": (("care",), ("sharing",)),
    "registry": (("registry",), ()),
    "research_contact": (("research",), ()),
}

#: What each kind means for the patient, in plain words (the printed consent form uses them):
#: kind -> (what agreeing allows, what refusing or withdrawing changes).
EXPLAINED: dict[str, tuple[str, str]] = {
    "care": (
        "Your treating hospital records your data in CPMS and may ask experts of the European Reference "
        "Network about your care in a virtual panel. Outside the hospital you are known only by a nickname: "
        "experts never see your name, date of birth or contact details.",
        "No panel can discuss you. Panels already under way stop at once: the experts lose access to your data. "
        "Your hospital keeps your medical record as the law requires.",
    ),
    "sharing": (
        "The experts of a panel may see the data your hospital chooses to share for the discussion "
        "(summary, diagnoses, test results, images, slides, family tree), always without your identity.",
        "As for care: no panel, and panels under way stop at once for everyone outside your hospital.",
    ),
    "registry": (
        "Anonymised data about your condition may be included in the registries of the Network and used for "
        "research approved by the Network's coordinators. Researchers never see your name or nickname.",
        "You are left out of the registries and of every research query from then on.",
    ),
    "research": (
        "Your hospital may contact you about research studies you could take part in.",
        "You will not be contacted about research.",
    ),
}

#: Shown to a panel member who is refused because of consent.
SUSPENDED = (
    "This panel is suspended: the patient's current consent does not allow sharing their data "
    "outside the enrolling hospital. The enrolling hospital and the panel lead have been told."
)


def allowed(consents: dict[str, dict], use: str) -> bool:
    """Whether the current consents (``current_consents``' value for one patient) allow ``use``."""
    needed, not_refused = RULES[use]
    for kind in needed:
        row = consents.get(kind)
        if row is None or row["status"] != "given":
            return False
    for kind in not_refused:
        row = consents.get(kind)
        if row is not None and row["status"] in ("refused", "withdrawn"):
            return False
    return True


async def patient_allows(patient_id: int, use: str) -> bool:
    from core.patients.access import current_consents

    return allowed((await current_consents([patient_id])).get(patient_id, {}), use)


async def patient_shareable(patient_id: int) -> bool:
    """The panel rule for one patient: may anyone outside the enrolling hospital see their data?"""
    return await patient_allows(patient_id, "panels")
