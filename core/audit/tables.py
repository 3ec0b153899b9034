from piccolo.columns import Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class AuditEntry(Table, tablename="audit_entry"):
    """One access to or change of patient data; rows are appended, never updated.

    Each row's ``hash`` covers its own fields and the previous row's hash, so editing,
    removing or reordering a row breaks the chain (see ``core.audit.chain.verify``).
    """

    #: Position in the chain, from 1; unique so two racing appends cannot both take it.
    seq = Integer(unique=True)
    at = Timestamptz()
    actor_id = Integer(null=True, default=None)
    actor_hcp = Integer(null=True, default=None)
    action = Varchar(length=50)
    patient_pseudonym = Varchar(length=40, index=True)
    #: The enrolling hospital: its data-protection officer is who may browse the entry.
    patient_hcp = Integer(index=True)
    #: A small JSON object of ids and counts; never identifying data.
    detail = Text(default="{}")
    address = Varchar(length=64, default="")
    prev_hash = Varchar(length=64)
    hash = Varchar(length=64)
