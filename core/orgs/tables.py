from piccolo.columns import Boolean, ForeignKey, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table


class Ern(Table, tablename="orgs_ern"):
    """A European Reference Network."""

    acronym = Varchar(length=40, unique=True)
    name = Varchar(length=200)
    area = Varchar(length=200, default="")


class Hcp(Table, tablename="orgs_hcp"):
    """A healthcare provider (hospital) in a member state."""

    name = Varchar(length=200)
    city = Varchar(length=100)
    country = Varchar(length=2)  # ISO 3166-1 alpha-2
    active = Boolean(default=True)


class HcpErn(Table, tablename="orgs_hcp_ern"):
    """Membership of an HCP in an ERN."""

    hcp = ForeignKey(Hcp, on_delete=OnDelete.cascade, index=True)
    ern = ForeignKey(Ern, on_delete=OnDelete.cascade, index=True)
