"""The CI upload portal dialect: CI tokens, APK uploads with validation, review and release.

``routes()`` is the dialect's whole surface for :mod:`runtime.dialects` (docs/portal.md); the
store team's commands are in :mod:`runtime.portal.cli`.
"""

from runtime.portal.endpoints import routes

__all__ = ["routes"]
