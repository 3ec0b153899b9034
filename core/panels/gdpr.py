"""What panels hold about a patient, for the GDPR access export (``gdpr_export`` hook)."""

from __future__ import annotations

import json

from core.panels.access import KINDS, STATUSES, URGENCIES
from core.patients.coded import load as load_codings


async def export(patient) -> dict:
    from core.orgs.tables import Ern
    from core.panels.tables import DataRequest, Meeting, Message, Outcome, OutcomeComment, Panel, PanelTransition
    from core.panels.templates_store import definition_of
    from core.panels.forms import display_answers
    from core.panels.views import _names

    panels = await Panel.select().where(Panel.patient == patient.id).order_by(Panel.id)
    erns = {e["id"]: e["acronym"] for e in await Ern.select(Ern.id, Ern.acronym)}
    out = []
    for p in panels:
        pid = p["id"]
        messages = await Message.select().where(Message.panel == pid).order_by(Message.id)
        requests = await DataRequest.select().where(DataRequest.panel == pid).order_by(DataRequest.id)
        comments = await OutcomeComment.select().where(OutcomeComment.panel == pid).order_by(OutcomeComment.id)
        steps = await PanelTransition.select().where(PanelTransition.panel == pid).order_by(PanelTransition.id)
        outcome = await Outcome.select().where(Outcome.panel == pid).first()
        meetings = await Meeting.select(Meeting.starts_at, Meeting.minutes, Meeting.timezone, Meeting.agenda, Meeting.cancelled_at).where(Meeting.panel == pid)
        people = await _names({p["lead"], p["created_by"]} | {m["author"] for m in messages} | {r["asked_by"] for r in requests}
                              | {c["author"] for c in comments} | {s["actor"] for s in steps})
        who = lambda i: people.get(i, {}).get("name", "")  # noqa: E731
        definition = await definition_of(p["form_template"])
        out.append({
            "panel": pid, "ern": erns.get(p["ern"], ""), "status": STATUSES.get(p["status"], p["status"]), "title": p["title"],
            "question": p["question"], "type": KINDS.get(p["kind"], p["kind"]), "urgency": URGENCIES.get(p["urgency"], p["urgency"]),
            "expertise_sought": p["specialties"], "created_at": p["created_at"], "created_by": who(p["created_by"]), "lead": who(p["lead"]),
            "closed_at": p["closed_at"],
            "consultation_form": {"form": p["form_label"], "answers": display_answers(definition, json.loads(p["form_answers"] or "{}")) if definition else []},
            "timeline": [{"at": s["at"], "action": s["action"], "by": who(s["actor"]), "note": s["note"]} for s in steps],
            "messages": [{"at": m["created_at"], "by": who(m["author"]), "reply_to": m["parent"], "text": m["body"]} for m in messages],
            "requests_for_data": [{"at": r["created_at"], "by": who(r["asked_by"]), "text": r["text"], "status": r["status"], "answer": r["answer"]} for r in requests],
            "meetings": meetings,
            "outcome": None if outcome is None else {
                "findings": outcome["findings"], "diagnosis": outcome["diagnosis_label"], "diagnosis_system": outcome["diagnosis_system"],
                "diagnosis_code": outcome["diagnosis_code"], "diagnosis_codings": load_codings(outcome["diagnosis_codings"]), "recommendations": outcome["recommendations"],
                "treatment_plan": outcome["treatment_plan"], "signed_at": outcome["signed_at"],
                "comments": [{"at": c["created_at"], "by": who(c["author"]), "text": c["body"]} for c in comments],
            },
        })
    return {"panels": out}
