"""CPMS core: identity, organisations, patients, panels, audit and the plugin host.

The core never imports a plugin: everything a plugin adds reaches the core through
the hooks in :mod:`core.hookspecs`.
"""

__version__ = "0.1.0"
