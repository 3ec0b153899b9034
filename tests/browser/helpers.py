"""Steps shared by browser tests."""

import os
import re
from pathlib import Path

import pyotp


def log_in(page, base: str, email: str, password: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def enrol_totp(page, base: str) -> str:
    """On the forced enrolment page: read the key, answer with a current code, return the key."""
    page.wait_for_url(re.compile(r"/account/2fa$"))
    secret = page.get_by_test_id("totp-secret").inner_text().strip()
    assert page.get_by_role("img", name="QR code for your authenticator app").is_visible()
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on two-step login").click()
    page.get_by_test_id("recovery-codes").wait_for()
    assert page.get_by_test_id("recovery-codes").locator("li").count() == 10
    return secret


def menu_labels(page) -> list[str]:
    nav = page.get_by_role("navigation", name="Main")
    return [t.strip() for t in nav.get_by_role("link").all_inner_texts()]


# --- accessibility: axe-core (npm, MPL-2.0, test-only) run inside the page -------------------------

#: The WCAG 2.0/2.1/2.2 A and AA rules. axe's best-practice rules are not enforced;
#: CPMS_AXE_BEST_PRACTICE=1 adds them to a local run (docs/accessibility.md).
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa")
_AXE_JS = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
_axe_source: str | None = None


def _load_axe(page) -> None:
    """Put axe into the page from node_modules (never a CDN). ``page.evaluate`` runs it through the
    DevTools protocol, which the app's strict CSP (script-src 'self') does not block, unlike an
    inline <script> tag."""
    global _axe_source
    if page.evaluate("() => typeof window.axe === 'object'"):
        return  # still there after an hx-boost navigation
    if _axe_source is None:
        if not _AXE_JS.exists():
            raise AssertionError(f"{_AXE_JS} is missing: run `npm ci` (./dev setup installs it)")
        _axe_source = _AXE_JS.read_text(encoding="utf-8")
    page.evaluate(_axe_source + "\n;true")


def axe_violations(page, *, context: str | None = None, disable: dict[str, str] | None = None) -> list[dict]:
    """axe's WCAG A/AA violations on the page as it is now (or within the ``context`` selector).

    ``disable`` turns rules off only with a reason written at the call site:
    ``disable={"rule-id": "why this finding is accepted"}``; prefer fixing the template."""
    for rule, reason in (disable or {}).items():
        if not (isinstance(reason, str) and reason.strip()):
            raise ValueError(f"axe rule {rule!r} disabled without a reason")
    page.wait_for_load_state()
    # htmx sections loaded on "load" must be in place before the page is judged
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
    _load_axe(page)
    tags = list(AXE_TAGS) + (["best-practice"] if os.environ.get("CPMS_AXE_BEST_PRACTICE") else [])
    options = {
        "runOnly": {"type": "tag", "values": tags},
        "resultTypes": ["violations"],
        "rules": {rule: {"enabled": False} for rule in (disable or {})},
    }
    return page.evaluate(
        """async ([context, options]) => {
            const result = await axe.run(context || document, options);
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                nodes: v.nodes.map(n => ({target: n.target.map(String).join(' '), summary: n.failureSummary})),
            }));
        }""",
        [context, options],
    )


def format_violations(violations: list[dict]) -> str:
    """One line per rule (id, impact, help, link), then the elements' selectors and what is wrong."""
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} [{len(v['nodes'])} element(s)] {v['helpUrl']}")
        for node in v["nodes"][:8]:
            lines.append(f"    {node['target']}")
            lines.extend("      " + s for s in (node["summary"] or "").splitlines()[1:3])
        if len(v["nodes"]) > 8:
            lines.append(f"    … and {len(v['nodes']) - 8} more")
    return "\n".join(lines)


def assert_accessible(page, *, context: str | None = None, disable: dict[str, str] | None = None) -> None:
    """Fail with a readable list when axe finds WCAG 2.2 A/AA violations on the page (see
    ``axe_violations`` for ``context`` and ``disable``)."""
    violations = axe_violations(page, context=context, disable=disable)
    if violations:
        size = page.viewport_size or {}
        where = f"{page.url} at {size.get('width')}x{size.get('height')}" + (f" within {context}" if context else "")
        raise AssertionError(f"axe: {len(violations)} WCAG violation(s) on {where}:\n{format_violations(violations)}")
