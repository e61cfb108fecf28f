"""The two registries of the builder: every package-format reader and every renderer.

A new format is one reader module in its dialect's subpackage and one line in :func:`readers`;
a new dialect or view is one ``Renderer`` class (builder/render.py) and one line in :func:`renderers`. Nothing
below this module imports it, so the registries can name every dialect without a loop.
"""

from __future__ import annotations

from builder.blobs import Blobs
from builder.device.firmware import FirmwareReader
from builder.device.module import ModuleReader
from builder.device.render import DeviceIndex
from builder.formats import Reader
from builder.portal.apk import ApkReader
from builder.portal.render import AndroidCatalog
from builder.qt.package import QtPackageReader
from builder.qt.render import QtStore
from builder.render import Renderer
from builder.shipper.ota import OtaReader
from builder.shipper.render import ShipperFeeds
from builder.web.render import WebCatalog


def readers() -> list[Reader]:
    """One reader per package format, in the order a path is offered to them."""
    return [ModuleReader(), FirmwareReader(), OtaReader(), QtPackageReader(), ApkReader()]


def renderers() -> list[Renderer]:
    """One renderer per dialect or view; package files first, the web catalog after the indexes."""
    return [Blobs(), DeviceIndex(), WebCatalog(), ShipperFeeds(), QtStore(), AndroidCatalog()]
