"""Put a simulated camera into a dock: serve the link until the dock is done or the cable goes.

>>> # with PtyCable(dock_node, cam_node) as cable: serve_docked(sim, cam_node)
"""

from __future__ import annotations

import time
from pathlib import Path

from common.link import Link, LinkClosed, open_port
from simulator.device_sim import SimDevice


def serve_docked(sim: SimDevice, camera_node: Path, *, timeout_s: float = 120.0) -> str:
    """Dock ``sim`` on its side of the cable and answer the dock; returns why it ended:
    ``"bye"`` (the dock finished), ``"unplugged"`` or ``"timeout"``."""
    rt = sim.runtime
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            port = open_port(str(camera_node))
            break
        except LinkClosed:
            if time.monotonic() > deadline:
                return "timeout"
            time.sleep(0.01)
    rt.dock()
    service = rt.attach_link(Link(port, nonblocking=True))  # as on the camera: never blocks its loop
    try:
        while time.monotonic() < deadline:
            handled = service.poll()
            rt.tick()
            if service.finished:
                _drain(service.link)
                return "bye"
            if service.closed:
                return "unplugged"
            if not handled:
                time.sleep(0.0005)
        return "timeout"
    finally:
        service.link.close()


def _drain(port: Link, within_s: float = 2.0) -> None:
    """Let the last answers (the goodbye) leave before the port closes."""
    until = time.monotonic() + within_s
    try:
        while port.unsent and time.monotonic() < until:
            port.flush()
            time.sleep(0.001)
    except LinkClosed:
        pass
