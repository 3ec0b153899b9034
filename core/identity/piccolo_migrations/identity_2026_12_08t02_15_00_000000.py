"""Passkeys and security keys (WebAuthn) as a second factor: ``identity_passkey``."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import BigInt, ForeignKey, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table


class User(Table, tablename="identity_user", schema=None):
    id = Serial(null=False, primary_key=True, unique=False, index=False, index_method=IndexMethod.btree,
                choices=None, db_column_name="id", secret=False)


ID = "2026-12-08T02:15:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "passkeys (WebAuthn credentials) as a second factor"


def _params(**overrides):
    params = {"null": False, "primary_key": False, "unique": False, "index": False, "index_method": IndexMethod.btree,
              "choices": None, "db_column_name": None, "secret": False}
    params.update(overrides)
    return params


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="identity", description=DESCRIPTION)
    manager.add_table(class_name="PasskeyCredential", tablename="identity_passkey", schema=None, columns=None)
    columns = [
        ("user", ForeignKey, _params(references=User, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade,
                                     target_column=None, null=True, index=True)),
        ("credential_id", Varchar, _params(length=700, default="", unique=True)),
        ("public_key", Text, _params(default="")),
        ("sign_count", BigInt, _params(default=0)),
        ("name", Varchar, _params(length=60, default="")),
        ("created_at", Timestamptz, _params(default=TimestamptzNow())),
        ("last_used_at", Timestamptz, _params(default=None, null=True)),
    ]
    for name, column_class, params in columns:
        manager.add_column(
            table_class_name="PasskeyCredential", tablename="identity_passkey", column_name=name, db_column_name=name,
            column_class_name=column_class.__name__, column_class=column_class, params=params, schema=None,
        )
    return manager
