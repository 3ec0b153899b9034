"""Fixtures shared by the core's tests and every in-tree plugin's tests (``plugins/*/tests``).

pytest reads a conftest only for tests below it; registering the core's fixture modules here,
at the root, gives a plugin's own tests the same real database, app client and browser.
"""

pytest_plugins = ["tests.fixtures", "tests.browser.fixtures"]
