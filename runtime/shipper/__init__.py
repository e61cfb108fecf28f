"""The shipper dialect (Android OTA builds: LineageOS-style updaters and the shippy client).

``routes()`` is the dialect's whole surface for :mod:`runtime.dialects`: maintainer login and
token check, the chunked upload, enable/disable, download counters and counted downloads
(docs/ota.md).
"""

from runtime.accounts import Accounts
from runtime.errors import register_error_shape
from runtime.services import Services
from runtime.shipper.endpoints import routes
from runtime.shipper.upload import ChunkedUploads, recover_completed

__all__ = ["routes", "startup"]

# DRF's shape on shipper's URLs
register_error_shape(("/api/", "/download_check/"), lambda status, code, message: {"detail": message})


def startup(svc: Services) -> bool:
    """Finish the chunked uploads a killed process had completed but not yet published; True
    when that changed repo/ (the app then rebuilds before it serves)."""
    db = svc.storage.db
    uploads = ChunkedUploads(db, svc.config.data, svc.config.repo, svc.settings())
    return recover_completed(uploads, Accounts(db)) > 0
