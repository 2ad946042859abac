"""The power seam: how full the battery is.

Real backend: :class:`SysfsBattery` reads a Linux power-supply ``capacity`` file
(UPS HATs and fuel gauges expose one). :class:`MainsPower` for a camera without a
battery gauge. The simulator scripts a level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class PowerSource(Protocol):
    def level_percent(self) -> float | None:
        """Battery level 0–100, or None when unknown (no gauge)."""
        ...


class MainsPower:
    def level_percent(self) -> float | None:
        return None


class SysfsBattery:
    def __init__(self, capacity_file: Path = Path("/sys/class/power_supply/BAT0/capacity")) -> None:
        self.path = capacity_file

    def level_percent(self) -> float | None:
        try:
            return float(self.path.read_text().strip())
        except (OSError, ValueError):
            return None
