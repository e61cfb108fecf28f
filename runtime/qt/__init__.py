"""The Qt deployment server dialect (Neptune 3 UI, Qt Application Manager).

``routes()`` is the dialect's whole surface for :mod:`runtime.dialects`: hello, login, logout,
the session-filtered app list, purchase, download and the staff upload (docs/qt.md).
"""

from runtime.qt.endpoints import routes

__all__ = ["routes"]
