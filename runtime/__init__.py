"""The runtime: the thin Starlette application for what cannot be static, and the device agent.

It may import :mod:`builder`; the device agent (:mod:`runtime.agent`) imports only the builder's
floor and never the server.
"""
