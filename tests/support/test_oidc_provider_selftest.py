"""Self-test of the real OIDC test provider: a full authorization-code + PKCE + nonce
login done by hand with plain httpx, so a failure here points at the provider set-up
rather than at the application code that relies on it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from tests.support.oidc_provider import run_oidc_provider

CLIENT = {
    "client_id": "cpms-test",
    "client_secret": "cpms-test-secret-0123456789",
    # Port 9 (discard): nothing listens there, and we never follow this redirect.
    "redirect_uris": ["http://127.0.0.1:9/cb"],
}
ACCOUNT = {
    "sub": "user-1",
    "email": "alice@example.org",
    "email_verified": True,
    "name": "Alice Example",
    "password": "s3cret-pass",
}


@pytest.fixture(scope="module")
def provider():
    with run_oidc_provider([CLIENT], [ACCOUNT]) as running:
        yield running


@pytest.fixture(scope="module")
def discovery(provider):
    return httpx.get(provider.discovery_url).raise_for_status().json()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_payload(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def follow_until_callback(http: httpx.Client, response: httpx.Response) -> httpx.Response | str:
    """Follow redirects by hand; return the callback URL instead of requesting it, or the
    first non-redirect response (e.g. the login page)."""
    while response.is_redirect:
        location = urljoin(str(response.url), response.headers["location"])
        if location.startswith(CLIENT["redirect_uris"][0]):
            return location
        response = http.get(location)
    return response


def start_login(http: httpx.Client, discovery: dict) -> tuple[httpx.Response, dict]:
    """Send the authorization request; return the login page and the request secrets."""
    secrets_ = {
        "verifier": b64url(secrets.token_bytes(32)),
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
    }
    params = {
        "response_type": "code",
        "client_id": CLIENT["client_id"],
        "redirect_uri": CLIENT["redirect_uris"][0],
        "scope": "openid email profile",
        "state": secrets_["state"],
        "nonce": secrets_["nonce"],
        "code_challenge": b64url(hashlib.sha256(secrets_["verifier"].encode()).digest()),
        "code_challenge_method": "S256",
    }
    page = follow_until_callback(http, http.get(discovery["authorization_endpoint"], params=params))
    assert isinstance(page, httpx.Response) and page.status_code == 200, page
    assert re.search(r'<input[^>]*name="login"', page.text)
    assert re.search(r'<input[^>]*name="password"', page.text)
    return page, secrets_


def submit_login(http: httpx.Client, page: httpx.Response, password: str) -> httpx.Response:
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1)
    return http.post(
        urljoin(str(page.url), action), data={"login": ACCOUNT["email"], "password": password}
    )


def test_discovery(provider, discovery):
    assert discovery["issuer"] == provider.issuer
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert {"openid", "email", "profile"} <= set(discovery["scopes_supported"])


def test_authorization_code_flow_with_pkce_and_nonce(provider, discovery):
    with httpx.Client() as http:  # keeps the provider's cookies between requests
        page, req = start_login(http, discovery)
        callback = follow_until_callback(http, submit_login(http, page, ACCOUNT["password"]))

        assert isinstance(callback, str), f"no redirect to the client: {callback.text}"
        query = parse_qs(urlsplit(callback).query)
        assert query["state"] == [req["state"]]
        assert "iss" not in query or query["iss"] == [provider.issuer]

        token = http.post(
            discovery["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": CLIENT["redirect_uris"][0],
                "code_verifier": req["verifier"],
            },
            auth=(CLIENT["client_id"], CLIENT["client_secret"]),  # client_secret_basic
        )
        assert token.status_code == 200, token.text
        tokens = token.json()

        claims = jwt_payload(tokens["id_token"])
        assert claims["iss"] == provider.issuer
        assert claims["aud"] == CLIENT["client_id"]
        assert claims["sub"] == ACCOUNT["sub"]
        assert claims["nonce"] == req["nonce"]
        assert claims["email"] == ACCOUNT["email"]
        assert claims["email_verified"] is True
        assert claims["name"] == ACCOUNT["name"]

        userinfo = http.get(
            discovery["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert userinfo.status_code == 200, userinfo.text
        assert userinfo.json() == {
            "sub": ACCOUNT["sub"],
            "email": ACCOUNT["email"],
            "email_verified": True,
            "name": ACCOUNT["name"],
        }


def test_wrong_password_gives_no_code(provider, discovery):
    with httpx.Client() as http:
        page, _ = start_login(http, discovery)
        result = follow_until_callback(http, submit_login(http, page, "wrong-password"))

        assert isinstance(result, httpx.Response), f"unexpected redirect to client: {result}"
        assert result.status_code == 401
        assert 'name="password"' in result.text  # the form is shown again
