"""``bodycam-sim``: run the camera in the simulator.

``bodycam-sim record --out DIR --pre-record S --record S [...] --json`` simulates a
boot, buffers until the pre-record window is full, presses record, records S
seconds and stops. Keys are created under ``DIR/keys`` unless given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from common import keys
from common.clock import SystemClock, VirtualClock
from common.signals import StopSignals
from device.camera import AudioParams, CameraConfig, VideoParams, open_camera
from device.identity import DeviceIdentity
from device.recorder import Recorder, SegmentCloseError
from device.ring_buffer import PreRecordBuffer
from device.segment_store import SegmentStore, StoreError
from device.segment_writer import WriterPolicy


class UsageError(Exception):
    """Bad arguments, config or script: printed as ``bodycam-sim: error: …``, exit code 2."""


class EnvironmentProblem(Exception):
    """The files or the disk are not as they must be: ``bodycam-sim: error: …``, exit code 1."""


def prepare_out(out: Path) -> Path:
    """``--out`` as an absolute directory (a relative one means the same to every later step)."""
    out = out.expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; name a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create --out {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise EnvironmentProblem(f"--out {out} is not writable")
    return out


def _resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 1280x720, got {text!r}")
    if not (16 <= w <= 7680 and 16 <= h <= 4320) or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"resolution {text} out of range (even numbers, 16x16…7680x4320)")
    return w, h


def _ranged(kind: type, lo: float, hi: float, name: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}")
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be within {lo}–{hi}, got {text}")
        return value
    return parse


def ensure_keys(key_dir: Path) -> tuple[Path, str, keys.DeviceKeyFiles]:
    """Authority identity + recipient and a device key under ``key_dir``, created if missing."""
    identity = key_dir / "authority.key"
    if not identity.exists():
        keys.create_authority(key_dir)
    recipient = keys.recipient_of(keys.load_identity(identity))
    device_key = key_dir / "device.key"
    if not device_key.exists():
        dev = keys.create_device_key(key_dir)
    else:
        pub = keys.load_signing_key(device_key).public_key()
        dev = keys.DeviceKeyFiles(device_key, key_dir / "device.pub.pem", keys.fingerprint(pub))
    return identity, recipient, dev


def cmd_record(args: argparse.Namespace, stop: StopSignals) -> dict[str, Any]:
    out = prepare_out(args.out)
    identity_path, recipient, dev = ensure_keys(args.keys or out / "keys")
    identity = DeviceIdentity.load(args.device_id, dev.private, [recipient], args.officer_id)
    clock = SystemClock() if args.realtime else VirtualClock(utc_start_us=SystemClock().utc_us())
    w, h = args.resolution
    video = VideoParams(width=w, height=h, fps=args.fps, bitrate=args.bitrate,
                        gop_frames=max(1, round(args.fps * args.gop_seconds)))
    camera = open_camera(CameraConfig("sim", video, AudioParams() if args.audio else None,
                                      {"seed": args.seed, "noise": args.noise,
                                       "scene": args.scene}), clock=clock)
    store = open_store(out / "store", identity)
    buffer = PreRecordBuffer(args.pre_record, args.buffer_mb << 20, keep_audio=args.pre_record_audio)
    recorder = Recorder(store, identity, camera.video, camera.audio, clock, buffer,
                        WriterPolicy(segment_seconds=args.segment_seconds))
    boot = clock.monotonic_us()
    # Fill the window, plus one GOP so the oldest keyframe can sit at or before it.
    press_at = boot + round((args.pre_record + args.gop_seconds + 0.5) * 1e6)
    stop_at = None
    info = None
    segments = []
    try:
        for packet in camera.packets():
            if stop.received:
                break
            if info is None and packet.kind == "video" and packet.pts_us >= press_at:
                info = recorder.start(announced=not args.emergency, press_pts_us=packet.pts_us)
                stop_at = packet.pts_us + round(args.record * 1e6)
            if stop_at is not None and packet.kind == "video" and packet.pts_us >= stop_at:
                break
            recorder.on_packet(packet)
        segments = recorder.stop()
    except OSError as exc:  # the disk filled up or failed under the recording
        info = info or recorder.info
        try:
            segments = recorder.stop()
            sealed = "the last one sealed as interrupted"
        except SegmentCloseError as close:
            segments = close.segments
            sealed = ("the last one sealed as interrupted" if close.sealed
                      else "the last one will be sealed at the next start")
        raise EnvironmentProblem(
            f"storage failed while recording ({exc.strerror or exc}); recording stopped with "
            f"{len(segments)} complete segments, {sealed}. Free space in {store.root} and verify it") from None
    finally:
        camera.close()
    if info is None:
        raise EnvironmentProblem(f"stopped by {stop.received} before the recording began; nothing recorded")
    first = segments[0].manifest if segments else None
    return {
        "identity": str(identity_path.resolve()),
        "recipient": recipient,
        "device_public_key": str(dev.public.resolve()),
        "device_public_key_pem": dev.public.read_text(),
        "device_id": args.device_id,
        "store": str(store.root.resolve()),
        "recording_id": info.recording_id,
        "stopped_by": stop.received,
        "announced": info.announced,
        "press_pts_us": info.press_pts_us,
        "pre_record_covered_s": (info.press_pts_us - first.first_pts_us) / 1e6 if first else 0.0,
        "video": camera.video.to_dict(),
        "audio": camera.audio.to_dict() if camera.audio else None,
        "segments": [{"path": str(s.path.resolve()), "manifest": str(s.manifest_path.resolve()),
                      "sha256": s.manifest.sha256.hex(), "seq": s.seq, "frames": s.manifest.frames,
                      "first_pts_us": s.manifest.first_pts_us, "last_pts_us": s.manifest.last_pts_us}
                     for s in segments],
    }


def open_store(root: Path, identity: DeviceIdentity, **kw: Any) -> SegmentStore:
    """Open the store and seal what a power cut left open (the boot step)."""
    try:
        store = SegmentStore(root, identity, **kw)
        store.seal_interrupted()
    except StoreError as exc:
        raise EnvironmentProblem(str(exc)) from None
    return store


def cmd_device(args: argparse.Namespace, stop: StopSignals) -> dict[str, Any] | None:
    """``bodycam-sim device``: the whole camera runtime, scripted (virtual time) or interactive."""
    from dataclasses import replace

    from device import config as device_config
    from simulator.device_sim import SimDevice, ScriptError, load_script

    out = prepare_out(args.out)
    try:
        config = device_config.load(args.config) if args.config else device_config.Config(base_dir=out)
        steps = load_script(args.script) if args.script else None
    except (device_config.ConfigError, ScriptError) as exc:
        raise UsageError(str(exc))
    identity_path, recipient, dev = ensure_keys(args.keys or out / "keys")
    key_path = device_config.resolve(config, config.device.key) if args.config else dev.private
    if not key_path.exists():
        raise UsageError(f"device key {key_path} not found; create it with: bodycam-keys device --out {key_path.parent}")
    recipients = config.device.recipients or [recipient]
    if not args.config:
        config = replace(config, device=replace(config.device, store=str(out / "store"),
                                                key=str(key_path), recipients=recipients))
    identity = DeviceIdentity.load(config.device.id, key_path, recipients, config.device.officer_id or None)
    try:
        sim = SimDevice.create(config, identity, realtime=steps is None, disk_bytes=args.disk_mb << 20,
                               seed=args.seed, noise=args.noise, scene=args.scene)
    except StoreError as exc:
        raise EnvironmentProblem(str(exc)) from None
    stop.on_signal = sim.runtime.request_stop
    if stop.received:  # a signal that came while setting up
        sim.runtime.request_stop(stop.received)
    if steps is None:
        from simulator.interactive import run_interactive
        run_interactive(sim)
        return None
    docked = None
    if args.dock:
        # Shift start: the camera comes out of the dock, which has set its clock and pushed the
        # officer assignment; at shift end it goes back in and is emptied.
        sim.runtime.boot()
        if _dock(sim, args.dock, args.dock_timeout) == "timeout":
            raise EnvironmentProblem(_no_dock(args.dock, args.dock_timeout, "at shift start; nothing was recorded"))
        sim.runtime.undock()
        sim.run_script(steps, boot=False)
        docked = _dock(sim, args.dock, args.dock_timeout)
    else:
        sim.run_script(steps)
    if sim.runtime.error == "store_error":
        detail = next(e["data"].get("detail", "") for e in reversed(sim.runtime.events.entries)
                      if e["kind"] == "state" and e["data"].get("reason") == "store_error")
        raise EnvironmentProblem(f"the store cannot be used: {detail}")
    report = sim.report()
    # the identity that opens this footage: ours only if the camera encrypted to it (a --config
    # may name the office's own recipients, whose identity this simulator never sees)
    opens = recipient in recipients
    report.update({"identity": str(identity_path.resolve()) if opens else None,
                   "recipient": recipient if opens else None, "recipients": list(recipients),
                   "device_public_key": str(dev.public.resolve()), "stopped_by": stop.received,
                   "docked": docked,
                   "segments_left": len(list(sim.runtime.store.dir.glob("*.manifest")))})
    return report


def _no_dock(node: Path, timeout_s: float, when: str) -> str:
    return (f"no dock answered on {node} within {timeout_s:g} s {when}. The camera's end of the cable must "
            f"be a pty whose other end is a bay of a running dock (bodycam-dock run; docs/dock.md shows one by "
            f"hand), or leave out --dock")


def _dock(sim: Any, node: Path, timeout_s: float) -> str:
    """Put the camera into the dock: ``NODE.docking`` asks for the cable (the demo plugs it),
    the camera serves the dock until it is done, then the marker goes (unplug)."""
    from simulator.docking import serve_docked
    marker = Path(f"{node}.docking")
    marker.write_text(sim.runtime.identity.device_id)
    try:
        return serve_docked(sim, node, timeout_s=timeout_s)
    finally:
        marker.unlink(missing_ok=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bodycam-sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="simulate boot, pre-record, one recording, stop")
    rec.add_argument("--out", type=Path, required=True, help="directory for keys and the segment store")
    rec.add_argument("--pre-record", type=_ranged(float, 0, 120, "--pre-record"), default=30.0,
                     metavar="S", help="pre-record window in seconds, 0–120 (default 30)")
    rec.add_argument("--record", type=_ranged(float, 0.1, 24 * 3600, "--record"), required=True,
                     metavar="S", help="seconds to record after the press")
    rec.add_argument("--resolution", type=_resolution, default=(1280, 720), metavar="WxH")
    rec.add_argument("--fps", type=_ranged(int, 1, 120, "--fps"), default=30)
    rec.add_argument("--bitrate", type=_ranged(int, 50_000, 100_000_000, "--bitrate"), default=4_000_000,
                     metavar="BPS")
    rec.add_argument("--gop-seconds", type=_ranged(float, 0.1, 10, "--gop-seconds"), default=1.0)
    rec.add_argument("--segment-seconds", type=_ranged(float, 1, 3600, "--segment-seconds"), default=10.0,
                     metavar="S")
    rec.add_argument("--seed", type=_ranged(int, 0, 2**32 - 1, "--seed"), default=0, help="scene seed")
    rec.add_argument("--noise", type=_ranged(int, 0, 255, "--noise"), default=0,
                     help="sensor-like noise amplitude (raises the real bitrate)")
    rec.add_argument("--scene", choices=["shapes", "faces"], default="shapes",
                     help="what the simulated camera sees: moving shapes, or people (real faces, for redaction)")
    rec.add_argument("--audio", action="store_true", help="add an AAC track (synthetic tone)")
    rec.add_argument("--pre-record-audio", action="store_true", help="keep audio in the pre-record buffer")
    rec.add_argument("--buffer-mb", type=_ranged(int, 1, 1024, "--buffer-mb"), default=256,
                     help="RAM cap of the pre-record buffer in MiB")
    rec.add_argument("--emergency", action="store_true", help="record without announcement (double press)")
    rec.add_argument("--device-id", default="sim-cam-01")
    rec.add_argument("--officer-id", default=None)
    rec.add_argument("--keys", type=Path, default=None, help="key directory (default OUT/keys)")
    rec.add_argument("--realtime", action="store_true", help="run at wall-clock speed")
    rec.add_argument("--json", action="store_true", help="print one JSON object")

    dev = sub.add_parser("device", help="run the camera runtime: interactive, or --script FILE in virtual time")
    dev.add_argument("--out", type=Path, default=Path("run/device"), help="keys and store (default run/device)")
    dev.add_argument("--config", type=Path, help="device TOML config (default: built-in defaults)")
    dev.add_argument("--script", type=Path, help="TOML ([[steps]]) or JSON list of {at, action, …}")
    dev.add_argument("--disk-mb", type=_ranged(int, 1, 1 << 22, "--disk-mb"), default=8192,
                     help="simulated disk size in MiB (default 8192)")
    dev.add_argument("--keys", type=Path, default=None,
                     help="key directory (default OUT/keys); a store only continues under its own key")
    dev.add_argument("--seed", type=_ranged(int, 0, 2**32 - 1, "--seed"), default=0)
    dev.add_argument("--noise", type=_ranged(int, 0, 255, "--noise"), default=0)
    dev.add_argument("--scene", choices=["shapes", "faces"], default="shapes",
                     help="what the simulated camera sees: moving shapes, or people (real faces, for redaction)")
    dev.add_argument("--json", action="store_true", help="print one JSON object (with --script)")
    dev.add_argument("--dock", type=Path, metavar="NODE",
                     help="dock at shift start and again after the script: each time create NODE.docking, wait "
                          "for the serial node NODE (the camera's end of the cable), serve the dock until it is "
                          "done, remove NODE.docking")
    dev.add_argument("--dock-timeout", type=_ranged(float, 1, 3600, "--dock-timeout"), default=120.0,
                     metavar="S", help="give up waiting for the dock after S seconds (default 120)")
    demo = sub.add_parser("demo", help="a whole shift: N cameras, scripted incidents, docked into one dock, "
                                       "offloaded, verified, stored")
    demo.add_argument("--workdir", type=Path, default=Path("run/demo"),
                      help="keys, dock, cameras and evidence store (default run/demo; an earlier demo there "
                           "is replaced)")
    demo.add_argument("--devices", type=_ranged(int, 1, 8, "--devices"), default=3, help="cameras (1–8, default 3)")
    demo.add_argument("--store", metavar="DIR|s3://BUCKET[/PREFIX]",
                      help="the evidence store (default WORKDIR/evidence); S3 endpoint and credentials from the "
                           "environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, …), see: bodycam-sim s3-server")
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    s3 = sub.add_parser("s3-server", help="run SeaweedFS on loopback for trying the S3 store (office and dock "
                                          "identities); prints the environment to use, runs until Ctrl-C")
    s3.add_argument("--dir", type=Path, default=Path("run/s3"), help="its data (default run/s3)")
    cable = sub.add_parser("cable", help="the USB cable between a simulated camera and a dock run by hand: "
                                         "plugged (a pty pair, socat) while the camera docks, runs until Ctrl-C")
    cable.add_argument("--camera", type=Path, required=True, metavar="NODE",
                       help="the camera's end, as given to bodycam-sim device --dock NODE")
    cable.add_argument("--dock-dir", type=Path, required=True, metavar="DIR",
                       help="the directory the dock watches (watch = … in dock.toml)")
    return parser


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from simulator.demo import DemoError, run_demo
    if args.store is not None and "://" in args.store:
        from evidence.s3 import parse_url
        try:
            parse_url(args.store)
        except ValueError as exc:
            raise UsageError(f"--store: {exc}") from None
    try:
        return run_demo(args.workdir, args.devices, store=args.store)
    except DemoError as exc:
        raise UsageError(str(exc)) if "workdir" in str(exc) else EnvironmentProblem(str(exc)) from None


def cmd_s3_server(args: argparse.Namespace, stop: StopSignals) -> int:
    """SeaweedFS in the foreground: what to export, then wait for Ctrl-C or SIGTERM."""
    from simulator.s3_server import CREDENTIALS, SeaweedS3
    try:
        server = SeaweedS3(args.dir)
    except RuntimeError as exc:
        raise EnvironmentProblem(str(exc)) from None
    with server:
        print(f"S3 (SeaweedFS) at {server.endpoint}, data in {args.dir}. In another shell:\n"
              f"  export AWS_ENDPOINT_URL={server.endpoint} AWS_DEFAULT_REGION=us-east-1\n"
              f"  export AWS_ACCESS_KEY_ID=office AWS_SECRET_ACCESS_KEY={CREDENTIALS['office']}"
              f"   # the office (Admin); the dock's: dock / {CREDENTIALS['dock']}\n"
              f"  bodycam-sim demo --store s3://evidence\nCtrl-C stops it.", flush=True)
        while stop.received is None and server.proc.poll() is None:
            time.sleep(0.2)
    return 0


def cmd_cable(args: argparse.Namespace, stop: StopSignals) -> int:
    """Plug the cable when the camera asks to be docked (``NODE.docking``), pull it when it is
    taken out: what a person does at the dock, as the demo does for each camera."""
    from simulator.serial_link import PtyCable
    marker = Path(f"{args.camera}.docking")
    if not args.camera.parent.is_dir():
        raise EnvironmentProblem(f"--camera {args.camera}: directory {args.camera.parent} does not exist "
                                 "(it is the --out of bodycam-sim device)")
    args.dock_dir.mkdir(parents=True, exist_ok=True)
    print(f"cable ready: plugged between {args.camera} and {args.dock_dir} whenever the camera docks; "
          "Ctrl-C stops it", flush=True)
    plugged: PtyCable | None = None
    try:
        while stop.received is None:
            docking = marker.exists()
            if docking and plugged is None:
                device = re.sub(r"[^A-Za-z0-9._-]", "_", marker.read_text().strip()[:64]) or "camera"
                try:
                    plugged = PtyCable(args.dock_dir / f"usb-bodycam_{device}-if00", args.camera)
                except RuntimeError as exc:
                    raise EnvironmentProblem(str(exc)) from None
                print(f"plugged: {device}", flush=True)
            elif not docking and plugged is not None:
                plugged.unplug()
                plugged = None
                print("unplugged", flush=True)
            time.sleep(0.02)
    finally:
        if plugged is not None:
            plugged.unplug()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with StopSignals() as stop:
        try:
            if args.command == "demo":
                result = cmd_demo(args)
            elif args.command == "s3-server":
                return cmd_s3_server(args, stop)
            elif args.command == "cable":
                return cmd_cable(args, stop)
            else:
                result = cmd_record(args, stop) if args.command == "record" else cmd_device(args, stop)
        except UsageError as exc:
            parser.error(str(exc))
        except (EnvironmentProblem, keys.KeyFileError, StoreError) as exc:
            print(f"bodycam-sim: error: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"bodycam-sim: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    if result is None:
        return 0
    if stop.received:
        print(f"bodycam-sim: stopped by {stop.received}; the recording was finished and sealed",
              file=sys.stderr)
    if args.command == "demo":
        if args.json:
            json.dump(result, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            from simulator.demo import print_summary
            print_summary(result)
        return 0
    if args.command == "device":
        if args.json:
            json.dump(result, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            for e in result["events"]:
                print(f"{e['t']:9.3f}  {e['state']:<10} {e['kind']}")
            print(f"{len(result['recordings'])} recordings; final state {result['final_state']}")
        if result.get("docked") == "timeout":  # the footage stays on the camera, sealed
            print(f"bodycam-sim: error: {_no_dock(args.dock, args.dock_timeout, 'at shift end')}; the "
                  f"{result['segments_left']} segments stay in {args.out}", file=sys.stderr)
            return 1
        return 0
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"recording {result['recording_id']}: {len(result['segments'])} segments, "
              f"pre-record {result['pre_record_covered_s']:.2f} s, store {result['store']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
