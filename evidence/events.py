"""The camera's event log as the evidence office reads it for one recording: announcement,
emergency start, markers, clock settings.

The dock stores the log in verified pieces (``devices/<device>/events/FIRST-LAST.cbors``,
docs/FORMAT.md §4); the office's index (:mod:`evidence.index`) verifies every record again
with the device key registered in the store as it follows the store, keeps the events, and
answers for one recording with :meth:`evidence.index.Index.events`: the events naming it
and those while it ran (by the camera's monotonic clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecordingEvents:
    events: list[dict[str, Any]] = field(default_factory=list)   # {seq, utc_us, mono_us, kind, data}
    markers: list[dict[str, Any]] = field(default_factory=list)  # {n, utc_us, offset_s}: into the video
    problems: list[str] = field(default_factory=list)
