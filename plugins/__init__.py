"""In-tree CPMS plugins. Each is registered through the ``cpms.plugins`` entry-point group
in ``pyproject.toml``, exactly like a plugin installed from another package."""
