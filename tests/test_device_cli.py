"""Device config validation and the `bodycam-sim device` command."""

from __future__ import annotations

import json
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


def test_bodycam_device_check_and_refusals(tmp_path):
    good = tmp_path / "ok.toml"
    good.write_text("[recording]\npre_record_seconds = 30\n")
    ok = subprocess.run([sys.executable, "-m", "device.main", "--config", str(good), "--check"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "ok" in ok.stdout
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
