"""Formats shared by the camera (device/) and the docking station (dock/).

Nothing here imports device/, dock/ or simulator/: this package is the contract
between them. See docs/FORMAT.md for the byte-level description of every format.
"""
