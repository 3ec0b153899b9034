"""Panels: one patient's case discussed by experts, from draft to archived outcome.

Nothing here holds identifying patient data: a panel refers to the patient by row id and
shows the nickname; free text is the clinicians' responsibility (the forms say so).
"""

from piccolo.columns import Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.identity.tables import User
from core.orgs.tables import Ern
from core.patients.tables import Patient


class ConsultationTemplate(Table, tablename="panels_template"):
    """An ERN's case template (sections and fields) as JSON; every save is a new version.
    ``ern`` null: the default template shipped with CPMS."""

    ern = ForeignKey(Ern, null=True, default=None, on_delete=OnDelete.cascade, index=True)
    version = Integer(default=1)
    title = Varchar(length=200)
    definition = Text()
    created_by = Integer(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Panel(Table, tablename="panels_panel"):
    patient = ForeignKey(Patient, on_delete=OnDelete.restrict, index=True)
    #: The ERN whose queue holds the panel (changes when forwarded).
    ern = ForeignKey(Ern, on_delete=OnDelete.restrict, index=True)
    #: draft, submitted, assembling, open, outcome_review, closed, archived, cancelled
    status = Varchar(length=20, default="draft", index=True)
    title = Varchar(length=200)
    question = Text()
    kind = Varchar(length=20, default="diagnostic")
    urgency = Varchar(length=10, default="routine", index=True)
    specialties = Varchar(length=300, default="")
    #: The consultation form version this panel uses (versions never change once saved) and its answers.
    form_template = ForeignKey(ConsultationTemplate, null=True, default=None, on_delete=OnDelete.restrict)
    form_label = Varchar(length=120, default="")
    form_answers = Text(default="{}")
    created_by = ForeignKey(User, on_delete=OnDelete.restrict, index=True)
    created_at = Timestamptz(default=TimestamptzNow())
    #: The member who drafts and signs the outcome (the creator unless changed).
    lead = ForeignKey(User, on_delete=OnDelete.restrict, index=True)
    #: The coordinator or dispatcher who took the panel from the queue.
    assembler = Integer(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow(), index=True)
    submitted_at = Timestamptz(null=True, default=None)
    closed_at = Timestamptz(null=True, default=None)
    #: False when closed with fewer than two contributing members (not counted in ERN monitoring).
    counts_in_monitoring = Boolean(default=True)
    #: Optimistic locking: a form posted with an older version is refused as stale.
    revision = Integer(default=1)


class PanelTransition(Table, tablename="panels_transition"):
    """The timeline: every status change and other notable step, with who and when."""

    panel = ForeignKey(Panel, on_delete=OnDelete.cascade, index=True)
    action = Varchar(length=30)
    from_status = Varchar(length=20, default="")
    to_status = Varchar(length=20, default="")
    actor = Integer(null=True, default=None)
    at = Timestamptz(default=TimestamptzNow())
    note = Text(default="")


class PanelForward(Table, tablename="panels_forward"):
    panel = ForeignKey(Panel, on_delete=OnDelete.cascade, index=True)
    from_ern = ForeignKey(Ern, on_delete=OnDelete.restrict)
    to_ern = ForeignKey(Ern, on_delete=OnDelete.restrict)
    reason = Text()
    actor = Integer(null=True, default=None)
    at = Timestamptz(default=TimestamptzNow())


class PanelMember(Table, tablename="panels_member"):
    panel = ForeignKey(Panel, on_delete=OnDelete.cascade, index=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    #: lead, member, guest
    role = Varchar(length=10, default="member")
    #: invited, accepted, declined, removed
    status = Varchar(length=10, default="invited")
    invited_by = Integer(null=True, default=None)
    invited_at = Timestamptz(default=TimestamptzNow())
    responded_at = Timestamptz(null=True, default=None)
    #: The guest role granted for this panel (expired when the panel closes).
    guest_assignment = Integer(null=True, default=None)


class PanelShare(Table, tablename="panels_share"):
    """A piece of the patient record shared with the panel (never the identity)."""

    panel = ForeignKey(Panel, on_delete=OnDelete.cascade, index=True)
    #: summary, diagnosis, phenotype, genetic, medication, document
    kind = Varchar(length=20)
    ref_id = Integer(null=True, default=None)
    #: What members see for a document (the stored title may carry a name).
    label = Varchar(length=200, default="")
    shared_by = Integer(null=True, default=None)
    shared_at = Timestamptz(default=TimestamptzNow())


class ExpertGroup(Table, tablename="panels_expert_group"):
    ern = ForeignKey(Ern, on_delete=OnDelete.cascade, index=True)
    name = Varchar(length=120)
    area = Varchar(length=200, default="")


class ExpertGroupMember(Table, tablename="panels_expert_group_member"):
    group = ForeignKey(ExpertGroup, on_delete=OnDelete.cascade, index=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade)


class Message(Table, tablename="panels_message"):
    panel = ForeignKey(Panel, on_delete=OnDelete.cascade, index=True)
    author = ForeignKey(User, on_delete=OnDelete.restrict)
    parent = Integer(null=True, default=None)
    body = Text()
    created_at = Timestamptz(default=TimestamptzNow())


class Mention(Table, tablename="panels_mention"):
    message = ForeignKey(Message, on_delete=OnDelete.cascade, index=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade)


class DataRequest(Table, tablename="panels_data_request"):
    """A member asks for an exam or information; a task for the enrolling HP."""

    panel = ForeignKey(Panel, on_delete=OnDelete.cascade, index=True)
    asked_by = ForeignKey(User, on_delete=OnDelete.restrict)
    text = Text()
    #: open, answered, withdrawn
    status = Varchar(length=10, default="open", index=True)
    answer = Text(default="")
    answered_by = Integer(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    answered_at = Timestamptz(null=True, default=None)


class Meeting(Table, tablename="panels_meeting"):
    panel = ForeignKey(Panel, on_delete=OnDelete.cascade, index=True)
    uid = Varchar(length=80, unique=True)
    starts_at = Timestamptz()
    minutes = Integer(default=60)
    #: IANA time zone the organiser scheduled in (shown to members; stored time is UTC).
    timezone = Varchar(length=60, default="UTC")
    agenda = Text(default="")
    room_url = Varchar(length=300, default="")
    created_by = Integer(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    #: iCalendar SEQUENCE: bumped on every change so calendars update the event.
    sequence = Integer(default=0)
    cancelled_at = Timestamptz(null=True, default=None)


class MeetingAttendance(Table, tablename="panels_meeting_attendance"):
    meeting = ForeignKey(Meeting, on_delete=OnDelete.cascade, index=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade)
    present = Boolean(default=True)
    recorded_by = Integer(null=True, default=None)
    recorded_at = Timestamptz(default=TimestamptzNow())


class Outcome(Table, tablename="panels_outcome"):
    """One per panel: drafted by the lead, commented, signed; then a PDF goes to the HP."""

    panel = ForeignKey(Panel, on_delete=OnDelete.cascade, unique=True)
    findings = Text(default="")
    diagnosis_label = Varchar(length=300, default="")
    diagnosis_system = Varchar(length=30, default="")
    diagnosis_code = Varchar(length=40, default="")
    #: More codes for the same diagnosis (JSON, core.patients.coded), e.g. the ICD-10 of an ORPHAcode.
    diagnosis_codings = Text(default="[]")
    recommendations = Text(default="")
    treatment_plan = Text(default="")
    updated_by = Integer(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())
    signed_by = Integer(null=True, default=None)
    signed_at = Timestamptz(null=True, default=None)
    #: The PDF report, stored as a document of the patient's record once signed.
    document = Integer(null=True, default=None)


class OutcomeSigner(Table, tablename="panels_outcome_signer"):
    """Co-signers the lead asked for; the outcome is final when all have signed."""

    panel = ForeignKey(Panel, on_delete=OnDelete.cascade, index=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade)
    signed_at = Timestamptz(null=True, default=None)


class OutcomeComment(Table, tablename="panels_outcome_comment"):
    panel = ForeignKey(Panel, on_delete=OnDelete.cascade, index=True)
    author = ForeignKey(User, on_delete=OnDelete.restrict)
    body = Text()
    created_at = Timestamptz(default=TimestamptzNow())
