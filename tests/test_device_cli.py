"""Device config validation and the `bodycam-sim device` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device import config as device_config

SMALL_CAMERA = '[camera]\nwidth = 320\nheight = 240\nbitrate = 300000\naudio = false\n'


def sim(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulator.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("toml, message", [
    ("[recording]\npre_record_seconds = 90\n[policy]\npre_record_cap_seconds = 60\n",
     "exceeds the administrator's cap"),
    ("[recording]\npre_record_seconds = 500\n", "out of range 0–120"),
    ("[recording]\ncovert = true\n", "unknown key recording.covert"),
    ("[leds]\nred = false\n", "unknown section [leds]"),
    ("[camera]\nfps = 'fast'\n", "camera.fps must be an integer"),
    ("[button]\nhold_stop_s = 8\nstandby_hold_s = 5\n", "short_press_max_s < hold_stop_s < standby_hold_s"),
    ("[pins]\nred = 17\n", "pins must all differ"),
    ("not toml at all [", "not valid TOML"),
])
def test_bad_config_is_refused_with_a_clear_message(tmp_path, toml, message):
    path = tmp_path / "bodycam.toml"
    path.write_text(toml)
    with pytest.raises(device_config.ConfigError) as exc:
        device_config.load(path)
    assert message in str(exc.value)
    proc = sim(["device", "--out", str(tmp_path / "o"), "--config", str(path),
                "--script", str(Path(__file__).parent / "data" / "short.toml")], tmp_path)
    assert proc.returncode == 2 and message in proc.stderr


def test_valid_config_loads_with_defaults(tmp_path):
    path = tmp_path / "bodycam.toml"
    path.write_text("[recording]\npre_record_seconds = 60\n[policy]\npre_record_cap_seconds = 90\n")
    cfg = device_config.load(path)
    assert cfg.recording.pre_record_seconds == 60 and cfg.button.hold_stop_s == 3.0
    assert device_config.resolve(cfg, "store") == tmp_path / "store"


@pytest.mark.parametrize("script, message", [
    ('[[steps]]\nat = 1\naction = "explode"\n', "action must be one of"),
    ('[[steps]]\nat = -1\naction = "press"\n', "'at' must be seconds"),
    ('[[steps]]\nat = 1\naction = "battery"\n', "needs level"),
    ('[[steps]]\nat = 1\naction = "hold"\nsecs = 3\n', "unknown keys ['secs']"),
    ('steps = []\n', "non-empty list"),
    ('[[steps]\n', "cannot parse"),
])
def test_bad_script_exit_2(tmp_path, script, message):
    path = tmp_path / "s.toml"
    path.write_text(script)
    proc = sim(["device", "--out", str(tmp_path / "o"), "--script", str(path), "--json"], tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_scripted_device_json_contract(tmp_path):
    cfg = tmp_path / "bodycam.toml"
    cfg.write_text(SMALL_CAMERA + '[recording]\npre_record_seconds = 4\n[device]\nkey = "o/keys/device.key"\n')
    script = tmp_path / "s.json"
    script.write_text(json.dumps([{"at": 6, "action": "press"}, {"at": 9, "action": "press"},
                                  {"at": 12, "action": "hold", "seconds": 3.5},
                                  {"at": 18, "action": "double"}, {"at": 21, "action": "hold", "seconds": 3.5}]))
    proc = sim(["device", "--out", str(tmp_path / "o"), "--config", str(cfg), "--script", str(script), "--json"],
               tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"events", "recordings", "leds"} <= out.keys()
    assert all({"t", "kind", "state"} <= e.keys() for e in out["events"])
    first, second = out["recordings"]
    assert {"id", "announced", "start", "end", "markers", "segments"} <= first.keys()
    assert first["announced"] and not second["announced"]
    assert first["markers"] == [9.0]
    assert all({"t", "red", "green", "amber"} <= l.keys() for l in out["leds"])
    assert out["final_state"] == "READY"
    assert out["recipients"] == [out["recipient"]] and Path(out["identity"]).exists()  # the key that opens it


def test_the_json_names_only_keys_that_open_the_footage(tmp_path):
    """A --config naming the office's own recipient: the simulator's key directory does not open
    this footage, so its JSON names no identity (it once named one that did not)."""
    from common import keys
    office = keys.create_authority(tmp_path / "office")
    cfg = tmp_path / "bodycam.toml"
    cfg.write_text(SMALL_CAMERA + f'[device]\nkey = "o/keys/device.key"\nrecipients = ["{office.recipient}"]\n')
    script = tmp_path / "s.json"
    script.write_text(json.dumps([{"at": 2, "action": "press"}, {"at": 5, "action": "hold", "seconds": 3.5}]))
    proc = sim(["device", "--out", str(tmp_path / "o"), "--config", str(cfg), "--script", str(script), "--json"],
               tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["identity"] is None and out["recipient"] is None and out["recipients"] == [office.recipient]


def test_bodycam_device_check_and_refusals(tmp_path):
    good = tmp_path / "ok.toml"
    good.write_text("[recording]\npre_record_seconds = 30\n")
    no_recipient = subprocess.run([sys.executable, "-m", "device.main", "--config", str(good)],
                                  capture_output=True, text=True, env={"GPIOZERO_PIN_FACTORY": "mock",
                                                                        "PATH": "/usr/bin:/bin"})
    assert no_recipient.returncode == 2 and "device.recipients is empty" in no_recipient.stderr
    secret_key = tmp_path / "bad.toml"
    secret_key.write_text('[device]\nrecipients = ["AGE-SECRET-KEY-1QQQ"]\n')
    bad = subprocess.run([sys.executable, "-m", "device.main", "--config", str(secret_key)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "never the secret key" in bad.stderr


def test_relative_out_means_what_it_says(tmp_path, monkeypatch, capsys):
    """--out run/shift writes run/shift/store (it used to nest run/shift/run/shift/store), and a
    second run boots the same store and continues its chain."""
    import json as json_
    from simulator.cli import main as sim_main
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "s.toml"
    script.write_text("[[steps]]\nat = 2\naction = 'double'\n[[steps]]\nat = 5\naction = 'hold'\nseconds = 3.2\n")
    for run in (1, 2):
        assert sim_main(["device", "--out", "run/shift", "--script", str(script), "--json"]) == 0
        result = json_.loads(capsys.readouterr().out)
        assert result["store"] == str(tmp_path / "run" / "shift" / "store")
    assert not (tmp_path / "run" / "shift" / "run").exists()
    names = sorted(p.name for p in (tmp_path / "run" / "shift" / "store" / "segments").glob("*.manifest"))
    assert names == ["00000001.manifest", "00000002.manifest"]  # one chain across both runs


CHECK_ENV = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}


def check(config: Path, env: dict | None = None) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "device.main", "--config", str(config), "--check", "--json"],
                          capture_output=True, text=True, env=env or CHECK_ENV)
    assert proc.returncode in (0, 1), proc.stderr
    out = json.loads(proc.stdout)
    return proc.returncode, {f["what"]: (f["level"], f["message"]) for f in out["findings"]}


def ready_camera(tmp_path: Path) -> Path:
    from common import keys
    authority = keys.create_authority(tmp_path / "keys")
    keys.create_device_key(tmp_path / "keys")
    dock = keys.create_device_key(tmp_path / "keys", name="dock")
    port = tmp_path / "ttyGS0"
    port.touch()
    cfg = tmp_path / "bodycam.toml"
    cfg.write_text(SMALL_CAMERA + f'''
[device]
key = "keys/device.key"
recipients = ["{authority.recipient}"]
[link]
port = "{port}"
dock_keys = ["{dock.public}"]
''')
    return cfg


def test_check_reports_a_ready_camera_and_each_missing_thing_in_plain_words(tmp_path):
    cfg = ready_camera(tmp_path)
    code, found = check(cfg)
    assert code == 0, found
    assert {k for k, (level, _) in found.items() if level == "problem"} == set()
    assert {"keys", "recipient", "store", "camera", "pins", "microphone", "announce", "dock link",
            "dock keys"} <= found.keys()
    human = subprocess.run([sys.executable, "-m", "device.main", "--config", str(cfg), "--check"],
                           capture_output=True, text=True, env=CHECK_ENV)
    assert human.returncode == 0 and "Ready to record" in human.stdout

    # the key is gone, the pins cannot be had, the link is missing, the disk is (by the limits) full
    (tmp_path / "keys/device.key").rename(tmp_path / "keys/elsewhere.key")
    (tmp_path / "ttyGS0").unlink()
    text = cfg.read_text().replace("[device]", "[storage]\nwarn_free_mb = 1048576\nfull_free_mb = 1048575\n[device]")
    cfg.write_text(text.replace('recipients = ["age1', 'recipients = []\n# ["age1'))
    env = {k: v for k, v in CHECK_ENV.items() if not k.startswith("GPIOZERO")}
    env["GPIOZERO_PIN_FACTORY"] = "mock"   # mock pins without PWM: the buzzer cannot be driven
    code, found = check(cfg, env)
    assert code == 1
    assert found["keys"][0] == "problem" and "is missing" in found["keys"][1] and "flash.sh" in found["keys"][1]
    assert found["recipient"][0] == "problem" and "age1" in found["recipient"][1]
    assert found["store"][0] == "problem" and "MB free" in found["store"][1] and "dock it" in found["store"][1]
    assert found["pins"][0] == "problem" and "gpio group" in found["pins"][1]
    assert found["dock link"][0] == "warning" and "bodycam-gadget.service" in found["dock link"][1]
    human = subprocess.run([sys.executable, "-m", "device.main", "--config", str(cfg), "--check"],
                           capture_output=True, text=True, env=env)
    assert human.returncode == 1 and "4 problem(s): this camera cannot record" in human.stdout


def test_check_notices_a_store_from_another_device_key(tmp_path):
    """A replaced device.key would make the camera refuse its store at boot: --check says so first."""
    from simulator.cli import main as sim_main
    cfg = ready_camera(tmp_path)
    script = tmp_path / "s.toml"
    script.write_text("[[steps]]\nat = 2\naction = 'double'\n[[steps]]\nat = 4\naction = 'hold'\nseconds = 3.2\n")
    assert sim_main(["device", "--out", str(tmp_path), "--config", str(cfg), "--keys", str(tmp_path / "keys"),
                     "--script", str(script), "--json"]) == 0
    assert check(cfg)[0] == 0
    from common import keys
    original = (tmp_path / "keys/device.key").read_bytes()
    (tmp_path / "keys/device.key").unlink()
    keys.create_device_key(tmp_path / "keys")
    code, found = check(cfg)
    assert code == 1 and found["keys"][0] == "problem" and "signed by another device key" in found["keys"][1]
    (tmp_path / "keys/device.key").write_bytes(original)  # the store's own key again
    assert check(cfg)[0] == 0
    head = tmp_path / "store/chain-head.cbor"
    record = head.read_bytes()
    for damaged in (record[:-7], record[:-5] + bytes([record[-5] ^ 1]) + record[-4:], b""):
        head.write_bytes(damaged)  # cut back, a flipped bit, emptied: boot would refuse it, so does --check
        code, found = check(cfg)
        assert code == 1 and found["chain"][0] == "problem" and "corrupt or altered" in found["chain"][1]


def test_render_cue_writes_the_announcement_once(tmp_path):
    cfg = tmp_path / "bodycam.toml"
    cfg.write_text('[cues]\nannouncement = "Achtung, Kamera"\nwav = "cues/a.wav"\n')
    run = [sys.executable, "-m", "device.main", "--config", str(cfg), "--render-cue"]
    first = subprocess.run(run, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    import wave
    with wave.open(str(tmp_path / "cues/a.wav")) as w:
        assert w.getnframes() / w.getframerate() > 0.5
    no_espeak = subprocess.run(run, capture_output=True, text=True, env={"PATH": "/nonexistent"})
    assert no_espeak.returncode == 0  # already rendered for this text: nothing to do
    (tmp_path / "cues/a.wav.meta").write_bytes(b"\xff\xfe")  # a garbled meta file: rendered again, no crash
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    cfg.write_text('[cues]\nannouncement = "Achtung, neue Ansage"\nwav = "cues/a.wav"\n')
    refused = subprocess.run(run, capture_output=True, text=True, env={"PATH": "/nonexistent"})
    assert refused.returncode == 1 and "apt install espeak-ng" in refused.stderr


def test_dock_with_no_dock_answering_says_so_and_exits_1(tmp_path):
    """A newcomer's --dock at a node no dock serves: a clear message and exit 1, never a silent 0."""
    cfg = tmp_path / "bodycam.toml"
    cfg.write_text(SMALL_CAMERA + '[device]\nkey = "o/keys/device.key"\n')
    script = tmp_path / "s.json"
    script.write_text(json.dumps([{"at": 2, "action": "press"}, {"at": 5, "action": "hold", "seconds": 3.5}]))
    proc = sim(["device", "--out", str(tmp_path / "o"), "--config", str(cfg), "--script", str(script),
                "--dock", str(tmp_path / "no-such-cable"), "--dock-timeout", "1"], tmp_path)
    assert proc.returncode == 1
    assert "no dock answered on" in proc.stderr and "at shift start" in proc.stderr and "bodycam-dock run" in proc.stderr
