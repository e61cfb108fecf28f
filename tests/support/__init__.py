"""Helpers shared by the tests (plain modules, no fixtures; those are in the conftest.py files).

- ``paths``: the project, the demo repo and the shared real-world fixtures (``DEPOT_SHARED_FIXTURES``)
- ``repos``: builder repos, sites and `depot` processes
- ``serving``: real `depot serve` and uvicorn servers on 127.0.0.1
- ``agent``, ``portal_client``, ``qt``, ``shipper``: a dialect's served stores, users and clients
- ``browser``: headless Chromium through Playwright
- generators of test data in place of the shared fixtures: ``apk_factory`` (signed and damaged
  APKs), ``binaries`` (ELF, Mach-O and PE headers), ``qt_sources`` (Qt AM package sources)
"""
