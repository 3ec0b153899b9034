"""Documentation stays true: every hook documented, README names the two commands."""

import inspect
import re
from pathlib import Path

from core import hookspecs

ROOT = Path(__file__).resolve().parents[1]


def hook_names() -> list[str]:
    return [
        name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "cpms_spec")
    ]


def test_every_hook_has_a_section_in_plugin_hooks_doc():
    doc = (ROOT / "docs" / "plugin-hooks.md").read_text()
    documented = set(re.findall(r"^### `([a-z_]+)`", doc, re.M))
    names = hook_names()
    assert len(names) >= 10
    missing = [n for n in names if n not in documented]
    assert missing == [], f"hooks without an entry in docs/plugin-hooks.md: {missing}"
    stale = documented - set(names)
    assert not stale, f"documented hooks that no longer exist: {stale}"


def test_readme_gives_the_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "./dev demo" in readme and "./dev test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci


def test_readme_configuration_table_lists_every_setting():
    from dataclasses import fields

    from core.settings import Settings

    readme = (ROOT / "README.md").read_text()
    missing = [f"CPMS_{f.name.upper()}" for f in fields(Settings) if f.name != "extra" and f"CPMS_{f.name.upper()}" not in readme]
    assert missing == []
