"""TOML configuration with a schema: dataclass sections, every value range-checked.

Shared by the camera (``bodycam.toml``) and the dock (``dock.toml``). Unknown sections
and keys are errors, so a typo never silently falls back to a default; numbers must
be finite and within their field's ``ranged(lo, hi)``.

>>> _coerce("net", "port", int, 8080, ranged(1, 65535))
8080
>>> _coerce("net", "port", int, 0, ranged(1, 65535))
Traceback (most recent call last):
...
common.config_schema.ConfigError: net.port = 0 is out of range 1–65535
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what to do."""


def ranged(lo: float, hi: float) -> dict[str, Any]:
    return {"range": (lo, hi)}


def _coerce(section: str, key: str, hint: Any, value: Any, meta: dict[str, Any]) -> Any:
    where = f"{section}.{key}"
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (hint is int and isinstance(value, float)):
            raise ConfigError(f"{where} must be {'an integer' if hint is int else 'a number'}, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        lo, hi = meta.get("range", (float("-inf"), float("inf")))
        if not lo <= value <= hi:
            raise ConfigError(f"{where} = {value!r} is out of range {lo:g}–{hi:g}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if getattr(hint, "__origin__", None) is list:
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{where} must be a list of strings")
        return list(value)
    raise ConfigError(f"{where}: unsupported type")  # pragma: no cover - schema bug


def build(cls: type[T], data: dict[str, Any], *, base_dir: Path = Path(".")) -> T:
    """Build and validate ``cls`` (sections as dataclass fields) from parsed TOML."""
    sections: dict[str, Any] = {}
    hints = {k: v for k, v in get_type_hints(cls).items() if is_dataclass(v)}
    for name, value in data.items():
        if name not in hints:
            raise ConfigError(f"unknown section [{name}]; known: {', '.join(hints)}")
        section = hints[name]
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table")
        known = {f.name: f for f in fields(section)}
        cls_hints = get_type_hints(section)
        kwargs = {}
        for key, v in value.items():
            if key not in known:
                raise ConfigError(f"unknown key {name}.{key}; known: {', '.join(known)}")
            kwargs[key] = _coerce(name, key, cls_hints[key], v, dict(known[key].metadata))
        sections[name] = section(**kwargs)
    return cls(**sections, base_dir=base_dir)  # type: ignore[call-arg]


def load(cls: type[T], path: Path, what: str = "config") -> T:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found")
    except IsADirectoryError:
        raise ConfigError(f"config {path} is a directory; name the {what} file")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (binary data); a config is TOML")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}")
    return build(cls, data, base_dir=path.parent)


