"""The store side of the device dialect: enrolled devices report back, rollouts are counted and
paused (docs/device-index.md, "Devices report back"). The on-device agent is runtime/agent,
which this package never imports (nor it this one); builder/device publishes the index.

``routes()`` is the dialect's surface for :mod:`runtime.dialects`; the commands
(``depot device``, ``depot rollout``) are in :mod:`runtime.device.cli`.
"""

from runtime.device.endpoints import routes
from runtime.errors import register_error_shape

__all__ = ["routes"]

register_error_shape(("/device/api/v1/",), lambda status, code, message: {"error": message})
