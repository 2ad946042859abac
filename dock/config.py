"""Dock configuration: one TOML file (``dock.toml``), range-checked, unknown keys are errors.

Example::

    [dock]
    id = "dock-rathaus-1"
    key = "/etc/bodycam/dock.key"           # Ed25519, from: bodycam-keys device --out DIR --name dock
    state = "/var/lib/bodycam-dock"         # enrolled cameras, officers, staging, status
    store = "/srv/evidence"                 # the evidence store (filesystem)
    watch = "/dev/serial/by-id"             # where docked cameras appear

    [transfer]
    window = 8                              # read requests in flight per bay
    timeout_s = 10                          # a camera that does not answer for this long is dropped
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common import config_schema
from common.config_schema import ConfigError, ranged
from common.text import check_plain

__all__ = ["ConfigError", "DockConfig", "load", "from_dict"]


@dataclass(frozen=True)
class DockSection:
    id: str = "dock-1"
    key: str = "keys/dock.key"
    state: str = "state"
    store: str = "evidence"
    watch: str = "/dev/serial/by-id"


@dataclass(frozen=True)
class TransferSection:
    window: int = field(default=8, metadata=ranged(1, 64))
    timeout_s: float = field(default=10.0, metadata=ranged(0.5, 600))
    status_interval_s: float = field(default=0.5, metadata=ranged(0.05, 60))
    retry_s: float = field(default=2.0, metadata=ranged(0.01, 600))       # first wait for a failing store
    retry_max_s: float = field(default=60.0, metadata=ranged(0.01, 3600))  # backoff doubles up to this


@dataclass(frozen=True)
class DockConfig:
    dock: DockSection = field(default_factory=DockSection)
    transfer: TransferSection = field(default_factory=TransferSection)
    base_dir: Path = field(default=Path("."), compare=False)

    def __post_init__(self) -> None:
        if not self.dock.id or len(self.dock.id) > 64:
            raise ConfigError("dock.id must be 1–64 characters")
        try:
            check_plain(self.dock.id, "dock.id")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        store = self.dock.store
        if store.startswith("s3://"):
            from evidence.s3 import parse_url
            try:
                parse_url(store)
            except ValueError as exc:
                raise ConfigError(f"dock.store: {exc}") from None
        elif "://" in store or not store:
            raise ConfigError(f"dock.store must be a directory or s3://bucket[/prefix], got {store!r}")

    def path(self, value: str) -> Path:
        """Relative paths in the config are relative to the config file."""
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


def from_dict(data: dict, *, base_dir: Path = Path(".")) -> DockConfig:
    return config_schema.build(DockConfig, data, base_dir=base_dir)


def load(path: Path) -> DockConfig:
    return config_schema.load(DockConfig, path, "dock.toml")
