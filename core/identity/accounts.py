"""E-mail verification, password reset and the password policy."""

ROUTES: list = []
