"""The CI upload portal dialect: CI tokens, APK uploads with validation, review and release.

``routes()`` is the dialect's whole surface for :mod:`runtime.dialects` (docs/portal.md); the
store team's commands are in :mod:`runtime.portal.cli`.
"""

from runtime.errors import register_error_shape
from runtime.portal.endpoints import routes
from runtime.services import Services
from runtime.uploads import sweep_stale

__all__ = ["routes", "startup"]

register_error_shape(
    ("/portal/api/",), lambda status, code, message: {"error": {"code": code, "message": message}}
)


def startup(svc: Services) -> bool:
    """Sweep the APKs killed uploads left half-received in the data folder."""
    sweep_stale(svc.config.data / "portal" / "incoming")
    return False
