"""The Qt deployment server dialect (Neptune 3 UI, Qt Application Manager).

``routes()`` is the dialect's whole surface for :mod:`runtime.dialects`: hello, login, logout,
the session-filtered app list, purchase, download and the staff upload (docs/qt.md).
"""

from runtime.errors import register_error_shape
from runtime.qt.endpoints import routes
from runtime.services import Services
from runtime.uploads import incoming_folder, sweep_stale

__all__ = ["routes", "startup"]

# Qt's error shape on Qt's URLs (the reference answers logical errors as {"status": ...}).
register_error_shape(
    ("/hello", "/login", "/logout", "/app/", "/category/", "/upload"),
    lambda status, code, message: {"status": "failed", "error": message},
)


def startup(svc: Services) -> bool:
    """Sweep what killed uploads left: spooled packages in the data folder, and temporary files
    in repo/apps/ (a copy across file systems, or an older Depot that spooled there)."""
    sweep_stale(incoming_folder(svc.config.data, "qt"))
    sweep_stale(svc.config.repo / "apps")
    return False
