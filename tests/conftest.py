"""The helpers tests import (``from tests.conftest import login, make_user``).

The fixtures themselves live in ``tests/fixtures.py`` and ``tests/browser/fixtures.py`` and are
registered once, by the root ``conftest.py``, for the core's tests and every plugin's tests alike
(a fixture module imported into two conftests would run its session fixtures twice).
"""

from tests.fixtures import (  # noqa: F401 - re-exported for the tests
    DATA_DIR, EXAMPLE, PASSWORD, SHARED, TEST_DB_URL, TEST_REDIS_URL, TOTP_SECRETS, app_client, csrf_of,
    enrol_totp, login, make_settings, make_user, post_form, text_of, totp_code,
)
