"""The shipper dialect (Android OTA builds: LineageOS-style updaters and the shippy client).

``routes()`` is the dialect's whole surface for :mod:`runtime.dialects`: maintainer login and
token check, the chunked upload, enable/disable, download counters and counted downloads
(docs/ota.md).
"""

from runtime.shipper.endpoints import routes

__all__ = ["routes"]
