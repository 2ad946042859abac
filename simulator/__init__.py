"""Simulated hardware for development and tests: camera, GPIO, serial link, shifts.

Shipped code (device/, dock/, common/) never imports this package; the simulated
camera is found through the ``bodycam.cameras`` entry point like any backend.
"""
