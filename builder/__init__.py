"""The builder: a pure, incremental function from repo/ to site/ (docs/architecture.md).

It never imports :mod:`runtime`; the runtime imports it to rebuild after an upload.
"""
