"""``bodycam-dock``: the docking station.

    bodycam-dock --config dock.toml enroll --device-id ID --key device.pub.pem
    bodycam-dock --config dock.toml officers add --id ID --name NAME --trained YYYY-MM-DD [--refresher-months 24]
    bodycam-dock --config dock.toml officers remove --id ID
    bodycam-dock --config dock.toml officers list [--json]
    bodycam-dock --config dock.toml assign --device ID --officer ID
    bodycam-dock --config dock.toml run [--no-ui] [--until-idle S]
    bodycam-dock --config dock.toml status [--json]

Exit codes: 0 done, 1 the environment is not as it must be (keys, store, state), 2 bad
arguments or configuration, or a refusal (an untrained officer, an unknown camera).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from common import keys
from common.service_notify import ServiceNotifier
from common.signals import StopSignals
from dock import config as dock_config
from dock.registry import Registry, RegistryError, check_id

DEFAULT_CONFIG = Path("/etc/bodycam/dock.toml")


def _fmt_bytes(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def live_view(dock, stop: StopSignals, until_idle: float | None) -> None:
    from rich.live import Live
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    def render() -> Table:
        t = Table(title=f"bodycam dock {dock.config.dock.id} — watching {dock.watch_dir}")
        for col in ("bay", "device", "officer", "progress", "MB", "MB/s", "ETA", "state"):
            t.add_column(col)
        for s in dock.status()["bays"]:
            total = max(s["total"], 1)
            t.add_row(Path(s["port"]).name[-28:], s["device"] or "?", s["officer"] or "—",
                      ProgressBar(total=total, completed=min(s["done"], total) if s["total"] else 0, width=24),
                      f"{s['done'] / 1e6:.1f}/{s['total'] / 1e6:.1f}", f"{s['rate_bps'] / 1e6:.1f}",
                      f"{s['eta_s']:.0f} s" if s["eta_s"] is not None else "—",
                      s["state"] + (f": {s['message'][:60]}" if s["message"] else ""))
        return t

    idle_since = time.monotonic()
    with Live(render(), refresh_per_second=4) as live:
        while not stop.received:
            time.sleep(0.25)
            live.update(render())
            if dock.busy():
                idle_since = time.monotonic()
            elif until_idle is not None and time.monotonic() - idle_since > until_idle:
                break


def _status_table(status: dict[str, Any]) -> str:
    """What the running dock is doing, also when it is idle."""
    updated = status.get("updated_utc")
    when = (dt.datetime.fromtimestamp(updated).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
            if isinstance(updated, (int, float)) else "never (is bodycam-dock run running?)")
    lines = [f"dock {status.get('dock_id', '?')}, store {status.get('store', '?')}, as of {when}"]
    bays = status.get("bays") or []
    if not bays:
        lines.append("no camera docked")
    for b in bays:
        lines.append(f"  {Path(b['port']).name:40} {str(b.get('device') or '?'):16} {b['state']:20} "
                     f"{str(b.get('message') or '')[:300]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bodycam-dock", description="docking station agent")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"dock.toml (default {DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("enroll", help="enrol a camera's public key")
    p.add_argument("--device-id", required=True)
    p.add_argument("--key", type=Path, required=True, help="the camera's device.pub.pem")
    off = sub.add_parser("officers", help="the officer registry").add_subparsers(dest="officers_cmd", required=True)
    p = off.add_parser("add")
    p.add_argument("--id", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--trained", help="date of the body-cam training (or its refresher), YYYY-MM-DD")
    p.add_argument("--refresher-months", type=int, default=24,
                   help="the training lapses this many months after it (default 24)")
    p = off.add_parser("remove", help="an officer who left (not while a camera is assigned to them)")
    p.add_argument("--id", required=True)
    p = off.add_parser("list")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("revoke", help="a lost or stolen camera: every dock refuses it from now on")
    p.add_argument("--device-id", required=True)
    p.add_argument("--reason", required=True, help="why, on record (e.g. 'gestohlen, Anzeige 123/26')")
    p.add_argument("--by", required=True, help="who decided it (a user name)")
    p = sub.add_parser("assign", help="assign a camera to a trained officer (reaches it at its next docking)")
    p.add_argument("--device", required=True)
    p.add_argument("--officer", required=True)
    p = sub.add_parser("run", help="watch for docked cameras and offload them")
    p.add_argument("--no-ui", action="store_true", help="no live view (a service)")
    p.add_argument("--until-idle", type=float, default=None, metavar="S",
                   help="exit once no bay has worked for S seconds")
    p = sub.add_parser("status", help="what the running dock is doing")
    p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    try:
        config = dock_config.load(args.config)
    except dock_config.ConfigError as exc:
        parser.error(str(exc))
    registry = Registry(config.path(config.dock.state))
    try:
        if args.command == "enroll":
            fp = registry.enroll(args.device_id, args.key)
            print(f"enrolled {args.device_id} (key {fp[:16]}…)")
        elif args.command == "officers" and args.officers_cmd == "add":
            o = registry.add_officer(args.id, args.name, args.trained, args.refresher_months)
            print(f"officer {o.id}: {o.name}, trained {o.trained or 'NOT YET — cannot be assigned a camera'}"
                  + (f", refresher due {o.refresher_due}" if o.refresher_due else ""))
        elif args.command == "officers" and args.officers_cmd == "remove":
            o = registry.remove_officer(args.id)
            print(f"officer {o.id} ({o.name}) removed")
        elif args.command == "officers":
            officers = [o.__dict__ for o in registry.officers()]
            print(json.dumps(officers, indent=2) if args.json else
                  "\n".join(f"{o['id']:<12} {o['name']:<30} trained {o['trained'] or '—'}"
                            f"{'  refresher due ' + o['refresher_due'] if o['refresher_due'] else ''}"
                            for o in officers))
        elif args.command == "revoke":
            return _revoke(config, registry, args)
        elif args.command == "assign":
            registry.assign(args.device, args.officer)
            print(f"{args.device} → {args.officer} (takes effect at the camera's next docking)")
        elif args.command == "status":
            from dock.hotplug import StatusDamaged, read_status
            try:
                status = read_status(config.path(config.dock.state))
            except StatusDamaged as exc:
                print(f"bodycam-dock: error: {exc}", file=sys.stderr)
                return 1
            print(json.dumps(status, indent=2) if args.json else _status_table(status))
        else:
            return run(config, args)
    except RegistryError as exc:
        parser.error(str(exc))
    except keys.KeyFileError as exc:
        if args.command == "enroll":
            parser.error(str(exc))
        print(f"bodycam-dock: error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        if args.command == "enroll":
            parser.error(f"{exc.filename}: no such file")
        print(f"bodycam-dock: error: {exc.filename}: not found (is the dock running / provisioned?)",
              file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bodycam-dock: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _revoke(config: dock_config.DockConfig, registry: Registry, args: argparse.Namespace) -> int:
    """This dock's list first (it holds even if the store is out of reach), then the store and
    its audit trail, from where every other dock and the office learn it."""
    from common import keys
    from common.text import check_plain
    from dock import revocation
    from evidence.store import open_store
    check_id(args.device_id, "--device-id")
    check_id(args.by, "--by")
    try:
        check_plain(args.reason, "--reason")
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    if not args.reason.strip() or len(args.reason) > 300:
        raise RegistryError("--reason must say why, in 1–300 characters")
    registry.revoke(args.device_id, {"utc_us": time.time_ns() // 1000, "reason": args.reason, "by": args.by,
                                     "dock": config.dock.id})
    # a second run (the store was out of reach) publishes the same record: same time, same bytes
    now = int(registry.revoked()[args.device_id]["utc_us"])
    print(f"{args.device_id} revoked at this dock")
    try:
        key = keys.load_signing_key(config.path(config.dock.key))
        store = open_store(config.dock.store, config.base_dir)
        done = revocation.publish(store, key, config.dock.id, args.device_id, args.reason, args.by, now)
    except Exception as exc:  # the store out of reach, a key that cannot be read: say what remains to do
        print(f"bodycam-dock: error: the store did not take the revocation ({exc}); this dock refuses "
              f"{args.device_id} already; run the same command again to tell the other docks and the office",
              file=sys.stderr)
        return 1
    print(f"in the store for every dock ({done['store']}) and on record (audit record {done['audit_seq']})")
    return 0


def run(config: dock_config.DockConfig, args: argparse.Namespace) -> int:
    from dock.hotplug import Dock
    dock = Dock(config)
    # systemd (Type=notify, WatchdogSec=): ready once watching; the loop's pings stop if it hangs
    service = ServiceNotifier.from_env()
    with StopSignals() as stop:
        dock.start()
        service.ready(f"watching {dock.watch_dir}")
        try:
            if args.no_ui:
                idle_since = time.monotonic()
                while not stop.received:
                    time.sleep(0.2)
                    dock.rescan()
                    service.alive()
                    if dock.busy():
                        idle_since = time.monotonic()
                    elif args.until_idle is not None and time.monotonic() - idle_since > args.until_idle:
                        break
            else:
                live_view(dock, stop, args.until_idle)
        finally:
            service.send("STOPPING=1")
            dock.stop()
    for bay in dock.status()["bays"]:
        print(f"{bay['device'] or bay['port']}: {bay['state']} {bay['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
