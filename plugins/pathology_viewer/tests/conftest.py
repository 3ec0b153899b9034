"""Per-test state of the plugin's in-process caches: the database is emptied before each test and its
ids start again, so a remembered access decision (30 s) must not carry over from one test to the next."""

import pytest


@pytest.fixture(autouse=True)
def _forget_cached_decisions():
    from plugins.pathology_viewer import access

    access.forget()
    try:
        from plugins.pathology_viewer import embed
    except ImportError:
        embed = None
    if embed is not None and hasattr(embed, "forget"):
        embed.forget()
    yield
