from piccolo.columns import JSON, Integer, Timestamptz, Varchar
from piccolo.table import Table


class Activity(Table, tablename="core_activity"):
    at = Timestamptz()
    actor_id = Integer(null=True, default=None, index=True)
    action = Varchar(length=100, index=True)
    subject_type = Varchar(length=50)
    subject_id = Varchar(length=100)
    data = JSON(default="{}")
    address = Varchar(length=64, default="")

    @classmethod
    async def record(cls, event) -> None:
        await cls.insert(
            cls(
                at=event.at, actor_id=event.actor_id, action=event.name,
                subject_type=event.subject_type, subject_id=str(event.subject_id),
                data=event.data, address=event.address,
            )
        )
