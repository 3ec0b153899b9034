"""Per-test state of the plugin's in-process caches: the database is emptied before each test and its
ids start again, so a remembered access decision (30 s) or rendering must not carry over."""

import pytest


@pytest.fixture(autouse=True)
def _forget_cached_state():
    from plugins.dicom_viewer import access, frames, store

    access.forget()
    frames.forget()
    store.forget_dataset()
    yield
