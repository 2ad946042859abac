"""flash.sh provisions a camera and a dock into a fake Raspberry Pi OS root; the units,
the gadget script and the staged package are checked with the real tools (shellcheck,
systemd-analyze verify, systemd-sysusers, openssl, pip)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from common import keys
from device import config as device_config
from dock import config as dock_config

REPO = Path(__file__).resolve().parents[1]
FLASH = REPO / "flash.sh"
SCRIPTS = [FLASH, REPO / "deploy/bin/bodycam-gadget", REPO / "deploy/bin/bodycam-install"]

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="flash.sh sets owners in the target root: run as root")

# What a Raspberry Pi OS Bookworm root has before we touch it (the groups with their Pi OS ids).
PASSWD = "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n"
GROUP = "root:x:0:\ndialout:x:20:pi\naudio:x:29:pi\nvideo:x:44:pi\ngpio:x:997:pi\npi:x:1000:\n"


@pytest.fixture
def pi_root(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nID=raspbian\n'
                                         'ID_LIKE=debian\nVERSION_CODENAME=bookworm\n')
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).write_text("")
        (root / "etc" / name).chmod(0o640)
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text("[all]\ncamera_auto_detect=1\n")
    return root


@pytest.fixture(scope="module")
def office(tmp_path_factory) -> dict[str, Path | str]:
    d = tmp_path_factory.mktemp("office")
    a = keys.create_authority(d)
    dock = keys.create_device_key(d, name="dock")
    dock2 = keys.create_device_key(d, name="dock2")
    return {"recipient_file": a.recipient_file, "recipient": a.recipient, "identity": a.identity,
            "dock": dock.public, "dock2": dock2.public, "dock_private": dock.private}


def flash(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(FLASH), *map(str, args)], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path with its type, mode, owner, content hash and mtime: a rerun must change none."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else \
            (os.readlink(p) if p.is_symlink() else "")
        out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, digest, st.st_mtime_ns)
    return out


def ids(root: Path, name: str) -> tuple[int, int]:
    user = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
                if line.startswith(name + ":"))
    return int(user[2]), int(user[3])


def group_id(root: Path, name: str) -> int:
    return next(int(line.split(":")[2]) for line in (root / "etc/group").read_text().splitlines()
                if line.startswith(name + ":"))


def groups_of(root: Path, user: str) -> list[str]:
    return [line.split(":")[0] for line in (root / "etc/group").read_text().splitlines()
            if user in line.split(":")[3].split(",")]


def meta(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_mode & 0o7777, st.st_uid, st.st_gid


def camera(root: Path, office: dict, *extra: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    return flash("camera", "--root", root, "--recipient", office["recipient_file"], "--dock-key", office["dock"],
                 *extra, check=check)


def test_scripts_are_shellcheck_clean():
    assert shutil.which("shellcheck"), "shellcheck is installed by dev.sh (Debian package shellcheck)"
    proc = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_camera_into_a_pi_root_and_a_second_run_changes_nothing(pi_root, office):
    first = camera(pi_root, office, "--officer", "KOD-101", "--audio-device", "plughw:CARD=Device,DEV=0")
    uid, gid = ids(pi_root, "bodycam")
    etc = pi_root / "etc/bodycam"
    assert meta(etc) == (0o751, 0, 0)   # several roles may share a machine; each file keeps its own mode
    assert meta(etc / "device.key") == (0o600, uid, gid)
    assert meta(etc / "device.pub.pem") == (0o644, 0, 0)
    assert meta(etc / "bodycam.toml") == (0o640, 0, gid)
    assert meta(pi_root / "var/lib/bodycam") == (0o700, uid, gid)
    assert meta(pi_root / "opt/bodycam/bin/bodycam-gadget")[0] == 0o755
    # the service user is in the groups Pi OS gives camera, GPIO, sound and serial access
    groups = {line.split(":")[0]: line.split(":")[3].split(",") for line in
              (pi_root / "etc/group").read_text().splitlines()}
    assert all("bodycam" in groups[g] for g in ("video", "gpio", "audio", "dialout"))

    # the key is a real Ed25519 key; its fingerprint is printed for enrolment and names the camera
    key = keys.load_signing_key(etc / "device.key")
    fp = keys.fingerprint(key.public_key())
    assert fp in first.stdout and "bodycam-dock enroll --device-id cam-" + fp[:8] in first.stdout
    cfg = device_config.load(etc / "bodycam.toml")
    assert cfg.device.id == "cam-" + fp[:8] and cfg.device.officer_id == "KOD-101"
    assert cfg.device.recipients == [office["recipient"]]
    assert cfg.camera.backend == "picamera2" and cfg.link.port == "/dev/ttyGS0"
    assert cfg.camera.audio and cfg.camera.audio_device == "plughw:CARD=Device,DEV=0"
    (dock_key,) = cfg.link.dock_keys
    assert (pi_root / dock_key.lstrip("/")).read_bytes() == Path(office["dock"]).read_bytes()
    assert (etc / "gadget.env").read_text() == f"DEVICE_ID=cam-{fp[:8]}\n"

    units = pi_root / "etc/systemd/system"
    for unit in ("bodycam-device.service", "bodycam-gadget.service", "bodycam-install.service"):
        assert meta(units / unit) == (0o644, 0, 0)
        assert os.readlink(units / "multi-user.target.wants" / unit) == f"/etc/systemd/system/{unit}"
    assert os.readlink(units / "serial-getty@ttyGS0.service") == "/dev/null"
    assert (pi_root / "etc/modules-load.d/bodycam.conf").read_text().split()[-2:] == ["dwc2", "libcomposite"]
    assert "\ndtoverlay=dwc2,dr_mode=peripheral\n" in (pi_root / "boot/firmware/config.txt").read_text()

    before = snapshot(pi_root)
    again = camera(pi_root, office, "--officer", "KOD-101", "--audio-device", "plughw:CARD=Device,DEV=0")
    assert "flash.sh: 0 change(s)" in again.stdout
    assert snapshot(pi_root) == before
    assert (pi_root / "boot/firmware/config.txt").read_text().count("dtoverlay=dwc2") == 1


def test_dry_run_changes_nothing_and_says_what_it_would_do(pi_root, office):
    before = snapshot(pi_root)
    dry = camera(pi_root, office, "--dry-run")
    assert snapshot(pi_root) == before
    assert "would generate the signing key /etc/bodycam/device.key" in dry.stdout
    assert "would install /etc/systemd/system/bodycam-device.service" in dry.stdout
    camera(pi_root, office)
    assert "0 change(s) would be made" in camera(pi_root, office, "--dry-run").stdout


def test_a_new_dock_or_recipient_is_taken_in_and_the_device_key_is_never_replaced(pi_root, office, tmp_path):
    camera(pi_root, office, "--device-id", "kod-cam-07")
    key = (pi_root / "etc/bodycam/device.key").read_bytes()
    (pi_root / "etc/bodycam/device.key").chmod(0o644)           # someone loosened it
    other = keys.create_authority(tmp_path, name="new-office")
    out = flash("camera", "--root", pi_root, "--recipient", other.recipient, "--dock-key", office["dock2"])
    assert "set /etc/bodycam/device.key to 600" in out.stdout
    assert (pi_root / "etc/bodycam/device.key").read_bytes() == key
    cfg = device_config.load(pi_root / "etc/bodycam/bodycam.toml")
    assert cfg.device.id == "kod-cam-07"                         # kept from the first run
    assert cfg.camera.audio  # a rerun without --audio-device: the default
    flash("camera", "--root", pi_root, "--recipient", other.recipient, "--dock-key", office["dock2"],
          "--audio-device", "none")
    assert not device_config.load(pi_root / "etc/bodycam/bodycam.toml").camera.audio
    assert cfg.device.recipients == [other.recipient]
    docks = sorted(p.name for p in (pi_root / "etc/bodycam/docks").iterdir())
    assert len(docks) == 1 and cfg.link.dock_keys == [f"/etc/bodycam/docks/{docks[0]}"]
    assert (pi_root / "etc/bodycam/docks" / docks[0]).read_bytes() == Path(office["dock2"]).read_bytes()


def test_dock_into_a_root_filesystem_and_s3(pi_root):
    flash("dock", "--root", pi_root, "--dock-id", "dock-rathaus-1")
    uid, gid = ids(pi_root, "bodycam-dock")
    etc = pi_root / "etc/bodycam"
    assert meta(etc / "dock.key") == (0o600, uid, gid)
    assert meta(etc / "dock.toml") == (0o640, 0, gid)
    # shared with an office on the same server: setgid, group bodycam-evidence (both are members)
    assert meta(pi_root / "srv/evidence") == (0o2770, 0, group_id(pi_root, "bodycam-evidence"))
    assert "bodycam-evidence" in groups_of(pi_root, "bodycam-dock")
    assert meta(pi_root / "var/lib/bodycam-dock") == (0o700, uid, gid)
    cfg = dock_config.load(etc / "dock.toml")
    assert (cfg.dock.id, cfg.dock.store, cfg.dock.key) == ("dock-rathaus-1", "/srv/evidence", "/etc/bodycam/dock.key")
    keys.load_signing_key(etc / "dock.key")
    dropin = pi_root / "etc/systemd/system/bodycam-dock.service.d/store.conf"
    assert "ReadWritePaths=/srv/evidence" in dropin.read_text()
    before = snapshot(pi_root)
    assert "0 change(s)" in flash("dock", "--root", pi_root).stdout  # the id is kept from the config
    assert snapshot(pi_root) == before

    flash("dock", "--root", pi_root, "--store", "s3://kod-evidence/ordnungsamt")
    assert dock_config.load(etc / "dock.toml").dock.store == "s3://kod-evidence/ordnungsamt"
    assert meta(etc / "dock.env") == (0o600, 0, 0) and "AWS_ACCESS_KEY_ID=" in (etc / "dock.env").read_text()
    assert not dropin.exists()
    (etc / "dock.env").write_text("AWS_ACCESS_KEY_ID=dock\n")        # the technician's credentials stay
    flash("dock", "--root", pi_root, "--store", "s3://kod-evidence/ordnungsamt")
    assert (etc / "dock.env").read_text() == "AWS_ACCESS_KEY_ID=dock\n"


def _verify_units(root: Path, units: list[str], tmp_path: Path) -> None:
    """systemd-analyze verify, inside the root, with the venv that first boot builds from the staged source."""
    assert shutil.which("systemd-analyze"), "systemd-analyze is installed by dev.sh (Debian package systemd)"
    (root / "usr/lib/systemd").mkdir(parents=True, exist_ok=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(root / "opt/bodycam/src/open-bodycam.tar.gz"), "-w", str(wheels)],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "evidence/console/templates/base.html" in names and "device/microphone.py" in names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
    venv = root / "opt/bodycam/venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True)
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                           *[f"/etc/systemd/system/{u}" for u in units]], capture_output=True, text=True)
    # verify exits 0 even for unknown keys ("…, ignoring"): any output at all is a finding
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


def test_units_pass_systemd_analyze_verify(pi_root, office, tmp_path):
    camera(pi_root, office)
    flash("dock", "--root", pi_root)  # one root holding both roles: all four units in one verify
    _verify_units(pi_root, ["bodycam-device.service", "bodycam-gadget.service", "bodycam-install.service",
                            "bodycam-dock.service"], tmp_path)
    unit = (pi_root / "etc/systemd/system/bodycam-device.service").read_text()
    for line in ("Type=notify", "WatchdogSec=10", "Restart=always", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "PrivateTmp=yes", "IPAddressDeny=any", "DevicePolicy=closed"):
        assert line in unit.splitlines()


def test_verify_does_catch_a_broken_unit(pi_root, office, tmp_path):
    """The check above can fail: a misspelt directive is reported."""
    camera(pi_root, office)
    unit = pi_root / "etc/systemd/system/bodycam-device.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=10", "WatchdogSecs=10"))
    with pytest.raises(AssertionError, match="Unknown key 'WatchdogSecs'"):
        _verify_units(pi_root, ["bodycam-device.service"], tmp_path)


BAD = [
    ([], "must be 'camera', 'dock' or 'office'"),
    (["toaster", "--root", "{root}"], "must be 'camera', 'dock' or 'office'"),
    (["office", "--root", "{root}", "--dock-id", "d1"], "--dock-id is for 'flash.sh dock'"),
    (["office", "--root", "{root}", "--store", "relative/dir"], "--store must be an absolute path"),
    (["camera", "--root", "{root}", "--dock-key", "{dock}"], "needs --recipient"),
    (["camera", "--root", "{root}", "--recipient", "{recipient}"], "needs --dock-key"),
    (["camera", "--root", "{root}", "--recipient", "age1nope", "--dock-key", "{dock}"], "neither an age1"),
    (["camera", "--root", "{root}", "--recipient", "{identity}", "--dock-key", "{dock}"], "never the identity"),
    (["camera", "--root", "{root}", "--recipient", "{recipient}", "--dock-key", "{identity}"], "not an Ed25519"),
    (["camera", "--root", "{root}", "--recipient", "{recipient}", "--dock-key", "{dock_private}"], "not an Ed25519"),
    (["camera", "--root", "{root}", "--recipient", "{recipient}", "--dock-key", "/nonexistent.pem"], "no such file"),
    (["camera", "--recipient", "{recipient}", "--dock-key", "{dock}"], "say where to install"),
    (["camera", "--root", "{root}", "--ssh", "pi@cam", "--recipient", "{recipient}", "--dock-key", "{dock}"],
     "exclude each other"),
    (["camera", "--root", "{root}/nope", "--recipient", "{recipient}", "--dock-key", "{dock}"], "not a directory"),
    (["camera", "--root", "{root}", "--recipient", "{recipient}", "--dock-key", "{dock}", "--device-id", "a b"],
     "--device-id 'a b'"),
    (["camera", "--root", "{root}", "--recipient", "{recipient}", "--dock-key", "{dock}", "--device-id"],
     "--device-id needs a value"),
    (["camera", "--root", "{root}", "--recipient", "{recipient}", "--dock-key", "{dock}", "--store", "/x"],
     "--store is for"),
    (["camera", "--root", "{root}", "--recipient", "{recipient}", "--dock-key", "{dock}", "--colour", "red"],
     "unknown option '--colour'"),
    (["dock", "--root", "{root}", "--store", "evidence"], "absolute path"),
    (["dock", "--root", "{root}", "--store", "/srv/../etc"], "absolute path"),
    (["dock", "--root", "{root}", "--store", "s3://Bad_Bucket"], "not s3://BUCKET"),
    (["dock", "--root", "{root}", "--store", "/srv/%h/evidence"], "absolute path"),
    (["dock", "--root", "{root}", "--store", 's3://bucket/"x'], "not s3://BUCKET"),
    (["dock", "--root", "{root}", "--recipient", "{recipient}"], "are for 'flash.sh camera'"),
    (["dock", "--ssh", "pi@cam;reboot"], "is not [USER@]HOST"),
    (["camera", "--root", "{root}", "--recipient", "{recipient}", "--dock-key", "{dock}", "--audio-device", "hw:0\"x"],
     "not an ALSA device name"),
    (["dock", "--root", "{root}", "--audio-device", "hw:1"], "are for 'flash.sh camera'"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a[:1] + a[-2:])[:40] for a, _ in BAD])
def test_bad_arguments_exit_2_and_touch_nothing(pi_root, office, args, message):
    values = {"root": str(pi_root), **{k: str(v) for k, v in office.items()}}
    values["recipient"] = str(office["recipient_file"])
    before = snapshot(pi_root)
    proc = flash(*[a.format(**values) for a in args], check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert snapshot(pi_root) == before


@pytest.mark.parametrize("os_release, message", [
    (None, "os-release is missing"),
    ('ID=fedora\nID_LIKE="rhel centos"\n', "unsupported target"),
])
def test_unsupported_targets_exit_2(pi_root, office, os_release, message):
    if os_release is None:
        (pi_root / "etc/os-release").unlink()
    else:
        (pi_root / "etc/os-release").write_text(os_release)
    before = snapshot(pi_root)
    proc = camera(pi_root, office, check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert snapshot(pi_root) == before


def test_ssh_dry_run_prints_the_plan_without_connecting(office):
    proc = flash("camera", "--ssh", "pi@kod-cam-07.local", "--recipient", office["recipient"],
                 "--dock-key", office["dock"], "--device-id", "kod-cam-07", "--dry-run")
    assert "pi@kod-cam-07.local:/tmp/bodycam-flash" in proc.stdout
    assert "sudo bash /tmp/bodycam-flash/flash.sh camera --root /" in proc.stdout
    assert "--device-id kod-cam-07" in proc.stdout


def test_gadget_script_names_the_serial_port_after_the_device(tmp_path):
    configfs, udc = tmp_path / "config", tmp_path / "udc"
    (configfs / "usb_gadget").mkdir(parents=True)
    udc.mkdir()
    env = tmp_path / "gadget.env"
    env.write_text("DEVICE_ID=kod-cam-07\n")
    run_env = {**os.environ, "BODYCAM_GADGET_ENV": str(env), "BODYCAM_CONFIGFS": str(configfs),
               "BODYCAM_UDC_DIR": str(udc), "PATH": f"{tmp_path}:/usr/bin:/bin"}
    (tmp_path / "modprobe").write_text("#!/bin/sh\nexit 0\n")  # the kernel's module loader is not ours to call
    (tmp_path / "modprobe").chmod(0o755)
    gadget = [str(REPO / "deploy/bin/bodycam-gadget")]
    no_udc = subprocess.run([*gadget, "start"], env=run_env, capture_output=True, text=True)
    assert no_udc.returncode == 1 and "dtoverlay=dwc2" in no_udc.stderr
    (udc / "3f980000.usb").mkdir()
    started = subprocess.run([*gadget, "start"], env=run_env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    g = configfs / "usb_gadget/bodycam"
    assert (g / "strings/0x409/serialnumber").read_text() == "kod-cam-07\n"
    assert (g / "UDC").read_text() == "3f980000.usb\n"
    assert (g / "idVendor").read_text() == "0x1d6b\n"
    assert os.readlink(g / "configs/c.1/acm.usb0") == str(g / "functions/acm.usb0")
    again = subprocess.run([*gadget, "start"], env=run_env, capture_output=True, text=True)
    assert again.returncode == 0 and "already bound" in again.stdout
    assert subprocess.run([*gadget, "status"], env=run_env, capture_output=True, text=True).stdout == \
        "bound: 3f980000.usb\n"
    env.write_text("")
    missing = subprocess.run([*gadget, "start"], env=run_env, capture_output=True, text=True)
    assert missing.returncode == 1 and "no DEVICE_ID" in missing.stderr


@pytest.mark.parametrize("kill_after_s", [0.02, 0.05, 0.1, 0.15, 0.2, 0.3])
def test_killed_mid_run_a_rerun_finishes_cleanly(pi_root, office, kill_after_s):
    """SIGKILL at any moment (a pulled cable, a closed laptop): the next run completes, leaves no
    temporary files, and the key it generated, if any, is kept whole."""
    args = ["bash", str(FLASH), "camera", "--root", str(pi_root), "--recipient", str(office["recipient_file"]),
            "--dock-key", str(office["dock"])]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(kill_after_s)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    key = pi_root / "etc/bodycam/device.key"
    kept = key.read_bytes() if key.exists() else None
    camera(pi_root, office)
    assert "0 change(s)" in camera(pi_root, office).stdout
    assert not [p for p in pi_root.rglob("*flash-tmp*")]
    keys.load_signing_key(key)
    if kept:
        assert key.read_bytes() == kept
    assert meta(key)[0] == 0o600


@pytest.mark.parametrize("unit, threshold", [("bodycam-device.service", 20), ("bodycam-dock.service", 20),
                                             ("bodycam-gadget.service", 40), ("bodycam-console.service", 20),
                                             ("bodycam-purge.service", 20), ("bodycam-verify.service", 20)])
def test_units_stay_sandboxed(unit, threshold, tmp_path):
    """systemd's own exposure score (0 best … 100): the camera and dock services stay at 'OK'."""
    shutil.copy(REPO / "deploy/systemd" / unit, tmp_path / unit)
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--threshold={threshold}",
                           "--no-pager", str(tmp_path / unit)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-400:] + proc.stderr


def test_a_full_card_fails_clearly_leaves_nothing_half_written_and_a_rerun_finishes(tmp_path, office):
    """A real full filesystem (a 60 KiB tmpfs), then the same one made larger."""
    mnt = tmp_path / "card"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mnt / "etc").mkdir()
        (mnt / "etc/os-release").write_text("ID=raspbian\nID_LIKE=debian\n")
        full = camera(mnt, office, check=False)
        assert full.returncode == 1 and "is it full or read-only?" in full.stderr
        assert not list(mnt.rglob("*flash-tmp*"))
        subprocess.run(["mount", "-o", "remount,size=20m", str(mnt)], check=True)
        camera(mnt, office)
        assert "0 change(s)" in camera(mnt, office).stdout
        keys.load_signing_key(mnt / "etc/bodycam/device.key")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_the_office_server_gets_its_console_and_daily_timers(pi_root, tmp_path):
    """flash.sh office: the console (loopback, behind the TLS proxy), a daily purge and a daily
    verify --since, each sandboxed and passing systemd-analyze verify; a rerun changes nothing."""
    out = flash("office", "--root", pi_root).stdout
    etc, units = pi_root / "etc/bodycam", pi_root / "etc/systemd/system"
    uid = int(next(line.split(":")[2] for line in (pi_root / "etc/passwd").read_text().splitlines()
                   if line.startswith("bodycam-office:")))
    keys.load_signing_key(etc / "office.key")
    assert meta(etc / "office.key")[0] == 0o600 and meta(etc / "office.key")[1] == uid
    env = dict(line.split("=", 1) for line in (etc / "office.env").read_text().splitlines()
               if line and not line.startswith("#"))
    assert env == {"BODYCAM_STORE": "/srv/evidence", "BODYCAM_OFFICE_KEY": "/etc/bodycam/office.key",
                   "BODYCAM_INDEX": "/var/lib/bodycam-office/index", "BODYCAM_IDENTITY": "/etc/bodycam/authority.key"}
    assert (units / "multi-user.target.wants/bodycam-console.service").is_symlink()
    for timer in ("bodycam-purge.timer", "bodycam-verify.timer"):
        assert (units / "timers.target.wants" / timer).is_symlink()
        assert "Persistent=true" in (units / timer).read_text().splitlines()
    for unit in ("bodycam-console.service", "bodycam-purge.service", "bodycam-verify.service"):
        assert "ReadWritePaths=/srv/evidence" in (units / f"{unit}.d/store.conf").read_text()
    assert "--host 127.0.0.1" in (units / "bodycam-console.service").read_text()
    assert "bodycam-evidence init --supervisor NAME" in out and "authority.key" in out
    before = snapshot(pi_root)
    assert "0 change(s)" in flash("office", "--root", pi_root).stdout
    assert snapshot(pi_root) == before
    flash("office", "--root", pi_root, "--store", "s3://kod-evidence/ordnungsamt")
    assert "BODYCAM_STORE=s3://kod-evidence/ordnungsamt" in (etc / "office.env").read_text()
    assert meta(etc / "office-s3.env") == (0o600, 0, 0) and not (units / "bodycam-console.service.d/store.conf").exists()
    _verify_units(pi_root, ["bodycam-install.service", "bodycam-console.service", "bodycam-purge.service",
                            "bodycam-purge.timer", "bodycam-verify.service", "bodycam-verify.timer"], tmp_path)


def test_the_office_timers_commands_run_as_written(tmp_path):
    """What the purge and verify units run, with the environment flash.sh writes, on a real
    store holding a recording three weeks old: verify passes, purge deletes it."""
    import time as _time
    from evidence.cli import main as evidence_main
    from evidence.store import FsEvidenceStore
    from simulator.store_gen import StoreWriter, Take
    k = keys.create_device_key(tmp_path / "k", name="office")
    store = tmp_path / "ev"
    assert evidence_main(["--store", str(store), "--key", str(k.private), "init", "--supervisor", "s", "--by", "s"]) == 0
    weeks_ago = _time.time_ns() // 1000 - 21 * 86_400_000_000
    (rid,) = StoreWriter(FsEvidenceStore(store), now_us=lambda: weeks_ago + 3_600_000_000).docking(
        "cam-1", [Take(weeks_ago, segments=2, officer="KOD-1")])
    env = {**os.environ, "BODYCAM_STORE": str(store), "BODYCAM_OFFICE_KEY": str(k.private),
           "BODYCAM_INDEX": str(tmp_path / "index")}
    for job in ("verify", "purge"):
        line = next(x for x in (REPO / f"deploy/systemd/bodycam-{job}.service").read_text().splitlines()
                    if x.startswith("ExecStart="))
        argv = line.removeprefix("ExecStart=").split()
        argv[0] = str(Path(sys.executable).parent / Path(argv[0]).name)
        proc = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (job, proc.stdout + proc.stderr)
    assert json.loads(proc.stdout)["deleted"] == [rid]
    assert (tmp_path / "index").is_dir()


def dpkg_status(root: Path, packages: list[str], arch: str = "amd64") -> None:
    """The image's dpkg database, as flash.sh reads it (an offline install checks it)."""
    (root / "var/lib/dpkg").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text("".join(
        f"Package: {p}\nStatus: install ok installed\nArchitecture: {arch}\n\n" for p in ["libc6", *packages]))
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/python3.11").write_text("")


def wheelhouse(tmp_path: Path, *names: str) -> Path:
    w = tmp_path / "wheels"
    w.mkdir(exist_ok=True)
    for n in names or ("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.whl", "six-1.17.0-py2.py3-none-any.whl",
                       "open_bodycam-0.1.0-py3-none-any.whl"):
        (w / n).write_bytes(b"PK not really a wheel")
    return w


CAMERA_DEBS = ["python3-venv", "alsa-utils", "libasound2-data", "espeak-ng"]


def test_an_offline_camera_gets_the_wheelhouse_and_installs_from_it_alone(pi_root, office, tmp_path):
    dpkg_status(pi_root, CAMERA_DEBS)
    w = wheelhouse(tmp_path)
    camera(pi_root, office, "--wheelhouse", w, "--camera-backend", "sim", "--pins", "mock")
    copied = sorted(p.name for p in (pi_root / "opt/bodycam/wheels").iterdir())
    # the project itself is staged as source; the wheels are its dependencies
    assert copied == ["numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.whl", "six-1.17.0-py2.py3-none-any.whl"]
    assert (pi_root / "opt/bodycam/roles").read_text().split() == ["camera"]
    cfg = device_config.load(pi_root / "etc/bodycam/bodycam.toml")
    assert cfg.camera.backend == "sim"
    pins = (pi_root / "etc/systemd/system/bodycam-device.service.d/pins.conf").read_text()
    assert "GPIOZERO_PIN_FACTORY=mock" in pins and "BODYCAM_BENCH_BUTTON=/run/bodycam/button" in pins
    # a second role on the same machine is added, not swapped
    flash("dock", "--root", pi_root, "--wheelhouse", w)
    assert (pi_root / "opt/bodycam/roles").read_text().split() == ["camera", "dock"]
    install = (REPO / "deploy/bin/bodycam-install").read_text()
    assert "--no-index --find-links $WHEELS" in install


@pytest.mark.parametrize("case", ["missing", "empty", "wrong role's image", "other processor", "other python"])
def test_an_offline_install_that_cannot_work_stops_before_touching_the_root(pi_root, office, tmp_path, case):
    dpkg_status(pi_root, ["python3-venv"] if case == "wrong role's image" else CAMERA_DEBS)
    w = {"missing": lambda: tmp_path / "nowhere",
         "empty": lambda: tmp_path / "empty",
         "wrong role's image": lambda: wheelhouse(tmp_path),
         "other processor": lambda: wheelhouse(tmp_path, "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.whl"),
         "other python": lambda: wheelhouse(tmp_path, "numpy-2.4.6-cp312-cp312-manylinux_2_27_x86_64.whl")}[case]()
    if case == "empty":
        w.mkdir()
    before = snapshot(pi_root)
    proc = camera(pi_root, office, "--wheelhouse", w, "--camera-backend", "sim", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    first = proc.stderr.splitlines()[0]
    expect = {"missing": "pip wheel -w", "empty": "pip wheel -w", "wrong role's image": "alsa-utils",
              "other processor": "aarch64", "other python": "Python 3.12"}[case]
    assert expect in first, first
    assert snapshot(pi_root) == before


def test_a_root_too_small_for_the_offline_install_is_refused_untouched(pi_root, office, tmp_path):
    """A real small filesystem (tmpfs of 8 MiB) under the root: flash.sh says so and writes nothing."""
    dpkg_status(pi_root, CAMERA_DEBS)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        shutil.copytree(pi_root, small / "root", symlinks=True)
        w = wheelhouse(tmp_path)
        (w / "big-1.0-py3-none-any.whl").write_bytes(os.urandom(4 << 20))
        before = snapshot(small / "root")
        proc = camera(small / "root", office, "--wheelhouse", w, "--camera-backend", "sim", check=False)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "MB free" in proc.stderr and "larger card" in proc.stderr, proc.stderr
        assert snapshot(small / "root") == before
    finally:
        subprocess.run(["umount", "-l", str(small)])
