"""Who sees a patient, and how much.

Users of the enrolling hospital holding ``patients.view`` see the full record, identity
included. Nobody else sees anything yet (panels will add a pseudonymous view: nickname and
shared clinical data only). A patient one may not see looks exactly like a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Request
from litestar.exceptions import HTTPException, NotFoundException

from core.permissions import allowed

CONSENT_KINDS = {
    "care": "Consent for Care",
    "sharing": "Sharing de-identified data within the ERN(s)",
    "registry": "Inclusion in ERN registries",
    "research": "Being contacted about research",
}
CONSENT_STATUSES = ("given", "refused", "withdrawn")


@dataclass(frozen=True)
class PatientRef:
    """What plugins receive for a patient (``patient_sections``, ``gdpr_export``)."""

    id: int
    pseudonym: str
    nickname: str
    hcp_id: int

    def __str__(self) -> str:  # plugins build URLs with the pseudonym
        return self.pseudonym


def sees_identity(actor, patient: dict) -> bool:
    return actor is not None and actor.hcp_id == patient["hcp"] and allowed(actor, "patients.view")


async def load_patient(request: Request, pseudonym: str, permission: str = "patients.view", allow_restricted: bool = False) -> dict:
    """The patient row for a page, or 404 for anyone who may not see it (erased ones too).
    Changes to a record whose processing is restricted (GDPR) are refused with 409."""
    from core.patients.tables import Patient

    actor = request.scope.get("user")
    row = await Patient.select().where(Patient.pseudonym == pseudonym[:20]).first()
    if row is None or row["erased_at"] is not None or not sees_identity(actor, row) or not allowed(actor, permission):
        raise NotFoundException("No such patient, or you may not see it.")
    if row["restricted"] and permission != "patients.view" and not allow_restricted:
        raise HTTPException(status_code=409, detail="Processing of this record is restricted at the patient's request (GDPR); it cannot be changed.")
    return row


async def current_consents(patient_ids: list[int]) -> dict[int, dict[str, dict]]:
    """Newest consent row per patient and kind (consent history is append-only)."""
    from core.patients.tables import Consent

    out: dict[int, dict[str, dict]] = {}
    if not patient_ids:
        return out
    rows = await Consent.select().where(Consent.patient.is_in(patient_ids)).order_by(Consent.id)
    for row in rows:
        out.setdefault(row["patient"], {})[row["kind"]] = row
    return out


def has_care_consent(consents: dict[str, dict]) -> bool:
    care = consents.get("care")
    return bool(care and care["status"] == "given")
