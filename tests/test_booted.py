"""The deployed system, booted: camera, dock and office as one Debian machine under qemu.

Built from Debian's packages (``system/image.py``), provisioned by ``flash.sh`` exactly as
an SD card is, booted with Debian's kernel under software emulation (TCG). The camera's
USB gadget (configfs ACM on ``dummy_hcd``) is the dock's ``/dev/ttyACM0`` through udev's
``/dev/serial/by-id``; its microphone is ``snd-aloop``'s capture side while the bench plays
a tone into the other side. Everything runs under systemd with the units as shipped.

Needs root, ``qemu-system-x86_64``, ``mmdebstrap`` and ``mke2fs`` (``./dev.sh setup`` installs
them as root). Off CI, without them, the module is skipped with the reason; with
``BODYCAM_BOOTED=1`` (set by ``.ci/run``) a missing tool fails instead.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))   # system/ is the bench, not an installed package

from system import image  # noqa: E402
from system.qemu import Qemu  # noqa: E402

REQUIRED = os.environ.get("BODYCAM_BOOTED") == "1"
TONE_HZ = 997          # a prime: not a harmonic of anything the simulated scene makes
DEVICE = "/opt/bodycam/venv/bin/bodycam-device --config /etc/bodycam/bodycam.toml"
OFFICE = "runuser -u bodycam-office -- env $(grep -v '^#' /etc/bodycam/office.env) /opt/bodycam/venv/bin/bodycam-evidence"
UDC = "/sys/kernel/config/usb_gadget/bodycam/UDC"
CAMERA_STORE = "/var/lib/bodycam/store"


def _missing() -> list[str]:
    miss = [t for t in ("qemu-system-x86_64", "mmdebstrap", "mke2fs") if shutil.which(t) is None]
    if os.geteuid() != 0:
        miss.append("root")
    return miss


pytestmark = pytest.mark.booted

if _missing() and not REQUIRED:
    pytest.skip(f"the booted system needs {', '.join(_missing())} (./dev.sh setup as root)", allow_module_level=True)


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    miss = _missing()
    assert not miss, f"the booted test needs {', '.join(miss)}: run ./dev.sh setup as root"
    work = Path(os.environ.get("BODYCAM_SYSTEM_WORK", tmp_path_factory.mktemp("booted")))
    t = time.monotonic()
    provisioned = image.provision(work)
    # two more disks for the storage faults: a device and its dm-log-writes log
    extra = (work / "vdb.img", work / "vdc.img")
    for disk, size in zip(extra, (256 << 20, 1 << 30)):
        disk.unlink(missing_ok=True)
        with open(disk, "wb") as f:
            f.truncate(size)
    q = Qemu(work, provisioned.disk, provisioned.kernel, provisioned.initrd, extra_disks=extra)
    q.provisioned = provisioned   # type: ignore[attr-defined]
    q.timings = dict(provisioned.timings, provision=time.monotonic() - t)   # type: ignore[attr-defined]
    q.start()
    q.timings["agent"] = q.wait_agent()   # type: ignore[attr-defined]
    yield q
    (work / "timings.json").write_text(json.dumps(q.timings, indent=1))   # type: ignore[attr-defined]
    print("\nbooted test timings (s):", json.dumps({k: round(v, 1) for k, v in q.timings.items()}))  # type: ignore[attr-defined]
    q.poweroff()


def show(q: Qemu, unit: str) -> dict[str, str]:
    out = q.run(f"systemctl show {unit} -p Type,ActiveState,SubState,WatchdogUSec,NRestarts,MainPID,Result").check("show").out
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def dock_bays(q: Qemu) -> list[dict]:
    r = q.run("cat /var/lib/bodycam-dock/status.json")
    return json.loads(r.out)["bays"] if r.rc == 0 and r.out.strip() else []


def camera_segments(q: Qemu) -> list[str]:
    out = q.run(f"ls {CAMERA_STORE}/segments 2>/dev/null | grep -c '\\.ts\\.age$' || true").out.strip()
    return out


def fetch(q: Qemu, path: str, chunk: int = 32 * 1024) -> bytes:
    """A file of the guest, in pieces the agent's bounded answers carry whole."""
    size = int(q.run(f"stat -c %s {path}").check(f"stat {path}").out)
    parts = [base64.b64decode(q.run(f"dd if={path} bs={chunk} skip={i} count=1 status=none | base64 -w0",
                                    timeout=60).check(f"reading {path}").out)
             for i in range((size + chunk - 1) // chunk)]
    data = b"".join(parts)
    assert len(data) == size, (len(data), size)
    return data


def test_every_unit_is_ready_through_systemd_with_its_watchdog_armed(machine):
    q = machine
    r = q.run("systemctl is-system-running --wait", timeout=600)
    failed = q.run("systemctl --failed --no-legend --plain").out
    assert r.out.strip() == "running", f"{r.out} failed units: {failed}\n" + q.run(
        "journalctl -b --no-pager -p warning | tail -40").out
    q.timings["system_running"] = time.monotonic() - q.started_at   # type: ignore[attr-defined]
    for unit in ("bodycam-device", "bodycam-dock", "bodycam-console"):
        # active only once the process itself said READY=1 (Type=notify)
        q.wait_for(f"systemctl is-active -q {unit}", 180, f"{unit} ready", every=1)
        q.timings[f"ready_{unit}"] = time.monotonic() - q.started_at   # type: ignore[attr-defined]
        s = show(q, unit)
        assert (s["Type"], s["ActiveState"], s["SubState"]) == ("notify", "active", "running"), (unit, s)
        assert s["WatchdogUSec"] not in ("0", "infinity", ""), (unit, s)
    assert show(q, "bodycam-gadget")["ActiveState"] == "active"
    # installed offline before the first boot (system/image.py): the unit's condition skips it
    assert "ConditionResult=no" in q.run("systemctl show bodycam-install -p ConditionResult").out
    # READY=1 said by each process itself, seen by systemd: the journal's "Started" lines
    journal = q.run("journalctl -b --no-pager -o short-monotonic -u bodycam-device -u bodycam-dock "
                    "-u bodycam-console -u bodycam-install -u bodycam-gadget | grep -E 'Started|Finished|installed'").out
    for unit in ("bodycam-device", "bodycam-dock", "bodycam-console"):
        assert f"Started {unit}.service" in journal, journal
    (Path(q.workdir) / "boot-ready.log").write_text(journal)
    # the gadget bound to the looped-back controller: the dock's side sees it through udev
    assert q.run(f"cat {UDC}").out.strip() == "dummy_udc.0"
    q.wait_for("ls /dev/serial/by-id/ | grep -q open_bodycam", 60, "udev's by-id node of the camera")


def tone_frequency(ts: bytes) -> tuple[float, float]:
    """The strongest frequency of the AAC track (and its share of the energy)."""
    import av
    samples = []
    with av.open(io.BytesIO(ts)) as c:
        stream = next(s for s in c.streams if s.type == "audio")
        rate = stream.codec_context.sample_rate
        for frame in c.decode(stream):
            samples.append(frame.to_ndarray().astype(np.float64).mean(axis=0))
    x = np.concatenate(samples)
    x = x[len(x) // 4:]   # past the start of the sound
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    peak = int(np.argmax(spectrum[1:])) + 1
    band = spectrum[max(0, peak - 20):peak + 21] ** 2
    return float(freqs[peak]), float(band.sum() / (spectrum ** 2).sum())


def test_a_shift_records_the_tone_and_the_dock_takes_it_through_the_real_gadget(machine):
    q = machine
    # out of the dock: the camera records to its own store
    q.run(f"echo '' > {UDC}").check("unplug")
    q.wait_for("! ls /dev/serial/by-id/ 2>/dev/null | grep -q open_bodycam", 30, "the by-id node to go")
    q.run(f"systemd-run --unit=bench-tone speaker-test -D plughw:CARD=Loopback,DEV=0 -t sine -f {TONE_HZ} "
          "-c 2 -r 48000").check("tone")
    q.run(f"{DEVICE} --press short").check("press")
    q.wait_for("journalctl -u bodycam-device -b --no-pager | grep -q recording", 30, "recording started", every=0.5)
    time.sleep(12)
    q.run(f"{DEVICE} --press hold", timeout=30).check("hold")
    q.wait_for(f"ls {CAMERA_STORE}/segments | grep -q '\\.ts\\.age$'", 60, "sealed segments")
    time.sleep(3)
    q.run("systemctl stop bench-tone")
    before = q.run(f"ls {CAMERA_STORE}/segments").out.split()
    assert any(n.endswith(".ts.age") for n in before), before
    # docked: binding the gadget is plugging in
    q.run(f"echo dummy_udc.0 > {UDC}").check("plug")
    q.wait_for("grep -q '\"state\": \"done\"' /var/lib/bodycam-dock/status.json", 240,
               "the dock to take the camera's footage", every=2)
    bays = dock_bays(q)
    assert bays and bays[-1]["state"] == "done", bays
    listing = json.loads(q.run(f"{OFFICE} list --json", timeout=120).check("list").out)
    recs = listing["recordings"]
    assert len(recs) == 1 and recs[0]["officer"] == image.OFFICER, recs
    # the receipts freed the camera
    q.wait_for(f"! ls {CAMERA_STORE}/segments | grep -q '\\.ts\\.age$'", 60, "the camera freed")
    # the sound of the stored footage is the tone played into the loopback card
    seg = q.run(f"find /srv/evidence -name '*.ts.age' | sort | sed -n 2p").check("find").out.strip()
    import pyrage
    identity = pyrage.x25519.Identity.from_str(
        next(line for line in (q.provisioned.keys / "authority.key").read_text().splitlines()  # type: ignore[attr-defined]
             if line.startswith("AGE-SECRET-KEY-")))
    ts = pyrage.decrypt(fetch(q, seg), [identity])
    hz, share = tone_frequency(ts)
    assert abs(hz - TONE_HZ) < 5 and share > 0.5, (hz, share)
    q.timings["tone_hz"] = hz   # type: ignore[attr-defined]


def test_the_clerk_plays_the_recording_from_the_booted_office_in_chromium(machine):
    """The console unit serves on the machine's loopback; the bench forwards it (as the TLS
    proxy would) and Chromium here logs in and plays the recording to its end."""
    from playwright.sync_api import sync_playwright
    from tests.test_console import chromium_path, login, wait_js
    from tests.test_console_product import play_to_end
    q = machine
    rec = json.loads(q.run(f"{OFFICE} list --json", timeout=120).check("list").out)["recordings"][0]
    url = f"http://localhost:{q.console_port}"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(),
                              args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        page = b.new_page(viewport={"width": 1280, "height": 900})
        login(page, url, image.CLERK[0], image.CLERK[1])
        page.goto(f"{url}/recordings/{rec['id']}", timeout=120_000)
        page.evaluate("() => { document.getElementById('player').muted = true; }")
        page.click("#play")
        wait_js(page, "document.getElementById('player').currentTime > 2.0", timeout=120)
        page.screenshot(path=str(Path(q.workdir) / "booted-console.png"))
        end = play_to_end(page, 2.0, rec["duration_s"] + 120)
        assert abs(end["d"] - rec["duration_s"]) < 1.5, (end, rec)
        b.close()


def test_purge_and_verify_run_as_their_timers_would_start_them(machine):
    q = machine
    for unit in ("bodycam-purge", "bodycam-verify"):
        q.run(f"systemctl start {unit}.service", timeout=600).check(unit)
        s = show(q, unit)
        assert s["Result"] == "success", (unit, s, q.run(f"journalctl -u {unit} --no-pager | tail").out)
    assert "0 problem" in q.run("journalctl -u bodycam-verify --no-pager").out or \
        "ok" in q.run("journalctl -u bodycam-verify --no-pager").out.lower()


def test_a_hung_camera_is_killed_by_systemds_watchdog_and_comes_back(machine):
    q = machine
    before = show(q, "bodycam-device")
    q.run(f"kill -STOP {before['MainPID']}").check("SIGSTOP")
    q.wait_for(f"[ \"$(systemctl show bodycam-device -p NRestarts --value)\" -gt {before['NRestarts']} ]",
               90, "the watchdog's restart", every=2)
    q.wait_for("systemctl is-active -q bodycam-device", 180, "the camera back")
    journal = q.run("journalctl -u bodycam-device -b --no-pager").out
    assert "Watchdog timeout" in journal, journal[-2000:]
    assert show(q, "bodycam-device")["MainPID"] != before["MainPID"]



def probe_sandbox(q: Qemu, unit: str, state_dir: str) -> dict[str, str]:
    """Run system/sandbox_probe.py under a copy of ``unit`` as installed (its drop-ins
    included, `systemctl cat`), with only ExecStart and the service type changed."""
    text = q.run(f"systemctl cat {unit}").check("systemctl cat").out
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0]
        if key in ("Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec", "ExecStart", "ExecStop",
                   "ConditionPathExists", "StartLimitIntervalSec"):
            continue
        if line.startswith("[Service]") and not any(x.startswith("[Service]") for x in lines):
            line += ("\nType=oneshot\nExecStart=/usr/bin/python3 /usr/local/lib/bodycam-bench/sandbox_probe.py "
                     f"{state_dir}")
        lines.append(line)
    probe = f"bench-probe-{unit}"
    q.run(f"cat > /run/systemd/system/{probe}.service && systemctl daemon-reload",
          input="\n".join(lines) + "\n").check("the probe unit")
    q.run(f"systemctl start {probe}", timeout=120)
    out = q.run(f"journalctl -u {probe} -o cat --no-pager | grep '^{{' | tail -1").out
    assert out.strip(), q.run(f"journalctl -u {probe} --no-pager | tail -20").out
    return json.loads(out)


def test_the_camera_services_sandbox_refuses_the_network_writes_elsewhere_and_others_keys(machine):
    q = machine
    got = probe_sandbox(q, "bodycam-device", "/var/lib/bodycam")
    print("camera sandbox:", json.dumps(got))
    assert got["write its state directory"] == "allowed", got
    for what in ("socket AF_INET", "socket AF_INET6", "connect"):
        assert got[what].startswith("refused"), (what, got)
    for what in ("write /etc/bodycam", "write /opt/bodycam", "write /srv/evidence", "write /home"):
        assert got[what] in ("refused: EROFS", "refused: EACCES", "refused: ENOENT"), (what, got)
    for what in ("read the office's identity", "read the office's key", "read the dock's key"):
        assert got[what] in ("refused: EACCES", "refused: ENOENT"), (what, got)


def test_a_gadget_that_cannot_bind_leaves_the_camera_recording_with_the_reason_in_the_journal(machine):
    q = machine
    # The gadget's function waits for ttyGS0 to be closed before it goes (u_serial), so the
    # camera stops first, as at shutdown (bodycam-gadget.service is Before= the camera).
    q.run("systemctl stop bodycam-device bodycam-gadget && modprobe -r dummy_hcd", timeout=180).check("no UDC")
    q.run("systemctl start bodycam-device", timeout=200)    # Wants= the gadget, which fails
    assert q.run("systemctl is-failed -q bodycam-gadget").rc == 0
    q.wait_for("systemctl is-active -q bodycam-device", 180, "the camera without its gadget")
    journal = q.run("journalctl -u bodycam-gadget -b --no-pager | tail -5").out
    assert "no USB device controller" in journal, journal
    before = q.run(f"ls {CAMERA_STORE}/segments | grep -c '\\.manifest$' || true").out.strip() or "0"
    q.run(f"{DEVICE} --press double").check("press")
    q.wait_for(f"[ $(ls {CAMERA_STORE}/segments | grep -c '\\.manifest$') -gt {before} ]", 120,
               "a segment sealed without a gadget")
    q.run(f"{DEVICE} --press hold", timeout=30).check("hold")
    # the controller back: the camera docks, and the dock takes everything
    q.run("modprobe dummy_hcd && systemctl restart bodycam-gadget").check("UDC back")
    q.wait_for(f"! ls {CAMERA_STORE}/segments | grep -q '\\.ts\\.age$'", 300, "the dock took it", every=2)


def test_a_failing_card_keeps_what_was_sealed_warns_and_the_dock_takes_the_good_part(machine):
    """The camera's store on dm-flakey: writes start failing (EIO) mid-recording. The camera
    says so (an error event and state), keeps every segment it sealed before, and the dock
    takes those into the evidence store."""
    q = machine
    q.run(f"echo '' > {UDC}; systemctl stop bodycam-device").check("stop")
    q.run("S=$(blockdev --getsz /dev/vdb) && dmsetup create bench-fl --table \"0 $S linear /dev/vdb 0\" "
          "&& mkfs.ext4 -q -F /dev/mapper/bench-fl && mkdir -p /run/bench-fl && mount /dev/mapper/bench-fl /run/bench-fl "
          f"&& cp -a {CAMERA_STORE}/. /run/bench-fl/ && umount /run/bench-fl "
          f"&& mount /dev/mapper/bench-fl {CAMERA_STORE} && chown bodycam:bodycam {CAMERA_STORE} && chmod 700 {CAMERA_STORE}",
          timeout=300).check("the store on dm-flakey")
    q.run("systemctl start bodycam-device", timeout=200).check("start")
    before = int(q.run(f"ls {CAMERA_STORE}/segments | grep -c '\\.manifest$' || true").out.strip() or 0)
    q.run(f"{DEVICE} --press double").check("press")
    q.wait_for(f"[ $(ls {CAMERA_STORE}/segments | grep -c '\\.manifest$') -gt {before} ]", 120, "a sealed segment")
    sealed = sorted(q.run(f"ls {CAMERA_STORE}/segments | grep '\\.manifest$'").out.split())
    time.sleep(2)
    q.run("S=$(blockdev --getsz /dev/vdb) && dmsetup suspend bench-fl && dmsetup reload bench-fl --table "
          "\"0 $S flakey /dev/vdb 0 0 3600 1 error_writes\" && dmsetup resume bench-fl").check("the card fails")
    q.wait_for("journalctl -u bodycam-device -b --no-pager -o cat | grep -q 'storage_error'", 120,
               "the camera to say its storage failed", every=2)
    journal = q.run("journalctl -u bodycam-device -b --no-pager -o cat | tail -30").out
    assert "[ERROR]" in journal or "warning" in journal, journal
    assert show(q, "bodycam-device")["ActiveState"] == "active", "the camera stays up to be docked"
    # docked: the dock takes what was sealed before the card failed
    q.run(f"echo dummy_udc.0 > {UDC}").check("plug")
    names = " ".join(sealed)
    q.wait_for(f"cd /srv/evidence/devices/{image.DEVICE_ID}/segments && ls {names}", 300,
               "the sealed segments in the evidence store", every=2)
    stored = set(q.run(f"ls /srv/evidence/devices/{image.DEVICE_ID}/segments").out.split())
    missing = [m for m in sealed if m not in stored]
    assert not missing, (missing, sorted(stored))
    verify = q.run(f"{OFFICE} verify --json", timeout=600)
    assert verify.rc == 0, verify.out[-2000:]
    q.run(f"echo '' > {UDC}; systemctl stop bodycam-device; umount -l {CAMERA_STORE}; dmsetup remove --force bench-fl; "
          "systemctl start bodycam-device", timeout=200)
