"""What piccolo's tools read (``PICCOLO_CONF=core.piccolo_conf``): the engine and apps in use."""

from core.db import current

DB, APP_REGISTRY = current()
