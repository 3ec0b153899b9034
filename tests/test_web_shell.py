"""The web shell through the HTTP app: login, dashboard menu, fragments, errors, headers."""

from tests.conftest import csrf_of, login, make_user, post_form, text_of


async def test_login_page_renders_with_csrf_and_security_headers(client):
    r = await client.get("/login")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert '<form method="post" action="/login"' in r.text
    assert 'name="_csrf_token"' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert "cdn" not in r.text.lower()


async def test_htmx_is_served_from_our_static_files(client):
    r = await client.get("/static/core/vendor/htmx.min.js")
    assert r.status_code == 200
    assert "htmx" in r.text[:5000]
    assert "max-age=3600" in r.headers["cache-control"]


async def test_anonymous_dashboard_redirects_to_login(client):
    r = await client.get("/", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/login?next=%2F"
    r = await client.get("/profile", follow_redirects=False)
    assert r.status_code in (302, 303, 307) and r.headers["location"].startswith("/login?next=%2Fprofile")


async def test_login_then_dashboard_shows_menu_for_role(client):
    await make_user("hp@example.org", roles=[("hp", "ERN RND")], name="Dr Hope")
    r = await login(client, "hp@example.org")
    assert r.status_code in (302, 303), r.text
    r = await client.get("/")
    assert r.status_code == 200
    page = text_of(r.text)
    assert "Welcome, Dr Hope" in page
    assert 'href="/erns"' in r.text and 'href="/example/hello"' in r.text
    assert 'href="/activity"' not in r.text  # admin only


async def test_admin_menu_differs(client):
    await make_user("admin@example.org", roles=[("admin", None)], hcp=None)
    await login(client, "admin@example.org")
    r = await client.get("/")
    assert 'href="/activity"' in r.text
    assert 'href="/example/hello"' not in r.text


async def test_wrong_password_is_refused_and_recorded(client):
    from core.activity.tables import Activity

    uid = await make_user("hp@example.org")
    r = await login(client, "hp@example.org", "wrong password")
    assert r.status_code == 400
    assert "not right" in r.text
    assert "cpms_session" not in client.cookies
    rows = await Activity.select().where(Activity.action == "user.login_failed")
    assert len(rows) == 1 and rows[0]["actor_id"] == uid


async def test_unknown_user_gets_same_message(client):
    r = await login(client, "nobody@example.org", "whatever")
    assert r.status_code == 400 and "not right" in r.text


async def test_login_without_csrf_token_is_refused(client):
    await make_user("hp@example.org")
    await client.get("/login")
    r = await client.post("/login", data={"email": "hp@example.org", "password": "x", "_csrf_token": "forged"})
    assert r.status_code == 403
    assert "cpms_session" not in client.cookies
    from core.activity.tables import Activity

    import json

    [row] = await Activity.select().where(Activity.action == "security.refused")
    data = row["data"] if isinstance(row["data"], dict) else json.loads(row["data"])
    assert row["subject_id"] == "/login" and data["reason"] == "CSRF token missing or wrong"


async def test_open_redirect_after_login_is_refused(client):
    await make_user("hp@example.org", roles=[("researcher", "ERN RND")], hcp=None, mfa=False)
    await client.get("/login")
    from tests.conftest import PASSWORD

    r = await client.post(
        "/login",
        data={"email": "hp@example.org", "password": PASSWORD, "next": "//evil.example/x", "_csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/"


async def test_logout_revokes_session(client):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    token = client.cookies.get("cpms_session")
    r = await post_form(client, "/logout")
    assert r.status_code in (302, 303)
    client.cookies.set("cpms_session", token)  # replaying the old cookie must not work
    r = await client.get("/", follow_redirects=False)
    assert r.headers["location"].startswith("/login")


async def test_404_page_html_and_problem_json(client):
    r = await client.get("/no/such/page")
    assert r.status_code == 404
    assert "text/html" in r.headers["content-type"]
    assert "Not found" in r.text
    r = await client.get("/api/no-such-thing")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 404


async def test_403_for_missing_permission(client):
    await make_user("res@example.org", roles=[("researcher", "ERN RND")], hcp=None)
    await login(client, "res@example.org")
    r = await client.get("/activity")
    assert r.status_code == 403
    assert "You may not do this" in r.text
    r = await client.get("/api/erns", headers={"accept": "application/json"})
    assert r.status_code == 200  # researchers may see the networks


async def test_500_never_leaks_internals(client):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    r = await client.get("/example/boom")
    assert r.status_code == 500
    assert "incident" in r.text
    for secret in ("/etc/passwd", "SELECT", "RuntimeError", "Traceback", "identity_user"):
        assert secret not in r.text


async def test_422_for_bad_query_parameter(client):
    await make_user("admin@example.org", roles=[("admin", None)], hcp=None)
    await login(client, "admin@example.org")
    r = await client.get("/activity?page=zero")
    assert r.status_code == 400
    assert "not valid" in r.text
    assert "Traceback" not in r.text


async def test_fragment_for_htmx_request_full_page_otherwise(client):
    await make_user("admin@example.org", roles=[("admin", None)], hcp=None)
    await login(client, "admin@example.org")
    full = await client.get("/activity")
    assert "<html" in full.text and "<table>" in full.text
    frag = await client.get("/activity", headers={"HX-Request": "true"})
    assert "<html" not in frag.text and "<table>" in frag.text
    boosted = await client.get("/activity", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in boosted.text


async def test_healthz_checks_database(client):
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "ok"}


async def test_openapi_lists_json_endpoints_only(client):
    r = await client.get("/api/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/api/erns" in paths and "/healthz" in paths
    assert "/login" not in paths and "/" not in paths


async def test_erns_page_lists_24_networks(client):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    r = await client.get("/api/erns")
    erns = r.json()
    assert len(erns) == 24
    assert {"ERN RND", "MetabERN", "ERKNet", "ERNICA", "Endo-ERN"} <= {e["acronym"] for e in erns}
    r = await client.get("/erns")
    assert "European Reference Network on Rare Neurological Diseases" in r.text
    missing = await client.get("/erns/999999")
    assert missing.status_code == 404


async def test_oversized_body_is_refused(client):
    await make_user("hp@example.org")
    await client.get("/login")
    r = await client.post("/login", content=b"x" * (11 * 1024 * 1024), headers={"content-type": "application/x-www-form-urlencoded", "x-csrftoken": csrf_of(client)})
    assert r.status_code == 413


async def test_options_is_answered_on_every_route_without_data_or_error_logs(client, settings, caplog):
    """Any client may send OPTIONS: Litestar's own responder answers 204 with the allowed
    methods, anonymous or not, and nothing is logged as an error (a flood cannot fill the log)."""
    import logging

    from tests.fixtures import session_app

    app = session_app(settings)
    paths = [r.path for r in app.routes if "{" not in r.path and not r.path.startswith("/static")]
    from core.patients.identity import new_pseudonym

    # and paths with ids in them, which exist or not: OPTIONS answers alike
    paths += [f"/patients/{new_pseudonym()}", "/panels/1", "/dicom/instances/1/frames/0/rendered", "/pathology/slides/1"]
    assert len(paths) > 20
    caplog.set_level(logging.WARNING)
    for path in paths:
        r = await client.options(path)
        assert r.status_code == 204, (path, r.status_code)
        assert r.content == b"" and "OPTIONS" in r.headers["allow"]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], caplog.records[:3]
    # OPTIONS opens nothing else: the same paths still refuse a GET without a session
    assert (await client.get("/panels/1", follow_redirects=False)).status_code in (302, 303, 401)
