"""Notifications: an in-app inbox and e-mail, with per-user preferences.

Modules call ``core.notify.service.notify`` with a registered kind (``core.notify.kinds``);
users read their inbox at ``/notifications`` and choose channels per kind at
``/notifications/preferences``. See docs/notifications.md.
"""

from core.hookspecs import hookimpl


@hookimpl
def register_piccolo_apps():
    return ["core.notify.piccolo_app"]


@hookimpl
def register_routes():
    from core.notify import views

    return views.ROUTES


