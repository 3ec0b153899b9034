"""Browser-test helpers; the fixtures are in ``tests/browser/fixtures.py`` (see ``tests/conftest.py``)."""

from tests.browser.fixtures import CHROMIUM, LAUNCH_ARGS, ROOT, MailBox  # noqa: F401 - re-exported
