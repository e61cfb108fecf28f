"""The device agent (`depot agent`): the robot-side app store.

It reads a store's published device index over HTTP, downloads and verifies modules and firmware,
installs them atomically under its own root folder, and serves the device app-store API
(``/app_store``) that the robot's UI polls. See docs/agent.md.
"""
