"""OpenID Connect login (EU Login) through authlib."""

ROUTES: list = []
