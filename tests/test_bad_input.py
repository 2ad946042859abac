"""Every CLI, fed garbage: one clear message, exit 2 for usage errors and 1 for
environment errors (files, disk), never a traceback, nothing lost.

Each row: CLI, arguments ({T} is a scratch directory prepared by the row's setup,
{K} a good key directory, {S} a good camera store), exit code, words the message
must contain. The CLIs run in-process through their ``main``: an exception that
escapes fails the row.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from common import keys
from common.keys_cli import main as keys_main
from device.main import main as device_main
from dock.verify_cli import main as verify_main
from simulator.cli import main as sim_main

from dock.cli import main as dock_main
from evidence.cli import main as evidence_main

CLIS = {"sim": sim_main, "device": device_main, "verify": verify_main, "keys": keys_main, "dock": dock_main,
        "evidence": evidence_main}
SMALL_REC = ["--resolution", "160x120", "--fps", "10", "--pre-record", "0", "--record", "1",
             "--bitrate", "100000"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A recorded store and its keys (by the CLI itself)."""
    out = tmp_path_factory.mktemp("good")
    assert sim_main(["record", "--out", str(out), *SMALL_REC]) == 0
    return out


def write(path: str, data: bytes | str) -> Callable[[Path, Path], None]:
    def setup(t: Path, good: Path) -> None:
        p = t / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def copy_good(then: Callable[[Path], None] | None = None) -> Callable[[Path, Path], None]:
    def setup(t: Path, good: Path) -> None:
        shutil.copytree(good, t / "cam", dirs_exist_ok=True)
        if then:
            then(t / "cam")
    return setup


def journal_garbage(cam: Path) -> None:
    (cam / "store" / "segments" / "00000099.open").write_bytes(b"\xff\x00garbage")


def foreign_store(t: Path, good: Path) -> None:
    shutil.copytree(good / "store", t / "out" / "store")
    keys.create_authority(t / "other")
    keys.create_device_key(t / "other")


def evidence_store(then: Callable[[Path], None] | None = None) -> Callable[[Path, Path], None]:
    """{T}/ev initialised by the office, its key {T}/k/office.key."""
    def setup(t: Path, good: Path) -> None:
        key = keys.create_device_key(t / "k", name="office").private
        assert evidence_main(["--store", str(t / "ev"), "--key", str(key), "init", "--supervisor", "s"]) == 0
        if then:
            then(t / "ev")
    return setup


def audit_garbage(ev: Path) -> None:
    (ev / "audit" / "000000000002.cbor").write_bytes(b"\xff garbage")


BINARY = bytes(range(256)) * 4
ROWS = [
    # --- bodycam-sim record
    ("sim", ["record", "--out", "{T}/o", "--seed", "-1", "--record", "1"], None, 2, "--seed"),
    ("sim", ["record", "--out", "{T}/o", "--record", "0"], None, 2, "--record"),
    ("sim", ["record", "--out", "{T}/o", "--record", "nan"], None, 2, "--record"),
    ("sim", ["record", "--out", "{T}/o", "--record", "1", "--pre-record", "inf"], None, 2, "--pre-record"),
    ("sim", ["record", "--out", "{T}/o", "--record", "1", "--resolution", "161x120"], None, 2, "resolution"),
    ("sim", ["record", "--out", "{T}/o", "--record", "1", "--fps", "abc"], None, 2, "--fps"),
    ("sim", ["record", "--out", "{T}/o", "--record", "1", "--bitrate", "1"], None, 2, "--bitrate"),
    ("sim", ["record", "--out", "{T}/o"], None, 2, "--record"),
    ("sim", ["record", "--out", "{T}/o", "--record", "1", "--frobnicate"], None, 2, "unrecognized"),
    ("sim", ["record", "--out", "{T}/file", *SMALL_REC], write("file", "x"), 2, "is a file"),
    ("sim", ["record", "--out", "/proc/bodycam/out", *SMALL_REC], None, 1, "cannot create --out"),
    ("sim", ["record", "--out", "{T}/o", *SMALL_REC], write("o/store", "x"), 1, "is a file"),
    ("sim", ["record", "--out", "{T}/o", *SMALL_REC], write("o/store/segments", "x"), 1, "is a file"),
    ("sim", ["record", "--out", "{T}/cam", *SMALL_REC],
     copy_good(lambda c: (c / "store" / "chain-head.cbor").write_bytes(b"\x00junk")), 1, "chain-head.cbor"),
    ("sim", ["record", "--out", "{T}/cam", *SMALL_REC], copy_good(journal_garbage), 1, "journal"),
    ("sim", ["record", "--out", "{T}/cam", *SMALL_REC],
     copy_good(lambda c: (c / "keys" / "device.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nxx\n")),
     1, "device.key"),
    ("sim", ["record", "--out", "{T}/cam", *SMALL_REC],
     copy_good(lambda c: shutil.copy(c / "keys" / "authority.key", c / "keys" / "device.key")), 1, "age identity"),
    ("sim", ["record", "--out", "{T}/cam", *SMALL_REC],
     copy_good(lambda c: (c / "keys" / "authority.key").write_bytes(BINARY)), 1, "not a text"),
    # --- bodycam-sim device
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.toml"], write("s.toml", "[[steps]]\nat = nan\naction = 'press'\n"), 2, "'at'"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.toml"], write("s.toml", "[[steps]]\nat = inf\naction = 'press'\n"), 2, "'at'"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.json"], write("s.json", '[{"at": NaN, "action": "press"}]'), 2, "'at'"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.json"], write("s.json", '[{"at": Infinity, "action": "end"}]'), 2, "'at'"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.toml"], write("s.toml", "[[steps]]\nat = 1e7\naction = 'press'\n"), 2, "one shift"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.toml"], write("s.toml", "[[steps]]\nat = 1\naction = 'hold'\nseconds = -1\n"), 2, "seconds"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.toml"], write("s.toml", "[[steps]]\nat = 1\naction = 'fly'\n"), 2, "action"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.toml"], write("s.toml", "steps = []\n"), 2, "non-empty"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.toml"], write("s.toml", BINARY), 2, "not a text file"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/missing.toml"], None, 2, "not found"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.toml", "--config", "{T}/c.toml"],
     lambda t, g: (write("s.toml", "[[steps]]\nat = 1\naction = 'end'\n")(t, g), write("c.toml", BINARY)(t, g)),
     2, "not a text file"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.toml", "--config", "{T}/c.toml"],
     lambda t, g: (write("s.toml", "[[steps]]\nat = 1\naction = 'end'\n")(t, g),
                   write("c.toml", "[camera]\nwidth = 321\n")(t, g)), 2, "even"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.toml", "--config", "{T}"],
     write("s.toml", "[[steps]]\nat = 1\naction = 'end'\n"), 2, "directory"),
    ("sim", ["device", "--out", "{T}/o", "--script", "{T}/s.toml", "--config", "{T}/c.toml"],
     lambda t, g: (write("s.toml", "[[steps]]\nat = 1\naction = 'end'\n")(t, g),
                   write("c.toml", "[camera]\nwidht = 320\n")(t, g)), 2, "unknown key"),
    ("sim", ["device", "--out", "{T}/o", "--disk-mb", "0", "--script", "{T}/s.toml"], None, 2, "--disk-mb"),
    ("sim", ["device", "--out", "{T}/out", "--keys", "{T}/other", "--script", "{T}/s.toml"],
     lambda t, g: (foreign_store(t, g), write("s.toml", "[[steps]]\nat = 1\naction = 'end'\n")(t, g)),
     1, "another key"),
    ("sim", ["device", "--out", "{T}/f", "--script", "{T}/s.toml"], write("f", "x"), 2, "is a file"),
    # --- bodycam-device
    ("device", ["--config", "{T}/c.toml", "--check"], write("c.toml", BINARY), 2, "not a text file"),
    ("device", ["--config", "{T}/c.toml", "--check"], write("c.toml", "[camera]\nheight = 719\n"), 2, "even"),
    ("device", ["--config", "{T}/c.toml", "--check"], write("c.toml", "[power]\nlow_percent = nan\n"), 2, "finite"),
    ("device", ["--config", "{T}/missing.toml", "--check"], None, 2, "not found"),
    ("device", ["--config", "{T}/c.toml", "--check"], write("c.toml", '[device]\nrecipients = ["AGE-SECRET-KEY-1X"]\n'),
     2, "never the secret key"),
    ("device", [], None, 2, "--config"),
    ("device", ["--config", "{T}/c.toml"], lambda t, g: write("c.toml", (
        f'[device]\nkey = "{g}/keys/authority.key"\nrecipients = ["{keys.recipient_of(keys.load_identity(g / "keys/authority.key"))}"]\n'
        '[camera]\nbackend = "sim"\n'))(t, g), 1, "age identity"),
    ("device", ["--config", "{T}/c.toml"], lambda t, g: write("c.toml", (
        f'[device]\nkey = "{t}/nokey"\nrecipients = ["{keys.recipient_of(keys.load_identity(g / "keys/authority.key"))}"]\n'))(t, g),
     1, "nokey"),
    # --- bodycam-verify
    ("verify", ["{T}", "--device-key", "{K}/device.pub.pem"], None, 1, "no segment manifests"),
    ("verify", ["{T}", "--device-key", "{K}/device.pub.pem"], write("segments/README", "x"), 1, "no segment manifests"),
    ("verify", ["{T}/nope", "--device-key", "{K}/device.pub.pem"], None, 2, "not a directory"),
    ("verify", ["{S}", "--device-key", "{K}/device.pub.pem", "--identity", "{K}/authority.key",
                "--decrypt-to", "{T}/f"], write("f", "x"), 2, "not a directory"),
    ("verify", ["{S}", "--device-key", "{K}/device.pub.pem", "--identity", "{K}/authority.key",
                "--decrypt-to", "/proc/bodycam/out"], None, 1, "cannot read or write"),
    ("verify", ["{S}", "--device-key", "{K}/device.pub.pem", "--decrypt-to", "{T}/d"], None, 2, "needs --identity"),
    ("verify", ["{S}", "--device-key", "{T}/missing.pem"], None, 2, "no such file"),
    ("verify", ["{S}", "--device-key", "{K}/authority.key"], None, 2, "not a PEM public key"),
    ("verify", ["{S}", "--device-key", "{T}/b"], write("b", BINARY), 2, "not a PEM public key"),
    ("verify", ["{S}", "--device-key", "{K}/device.pub.pem", "--identity", "{K}/device.key"], None, 2, "not an age identity"),
    ("verify", ["{S}", "--device-key", "{K}/device.pub.pem", "--identity", "{T}/b"], write("b", BINARY), 2, "not a text"),
    ("verify", ["{S}", "--device-key", "{K}/device.pub.pem", "--anchor", "banana"], None, 2, "anchor"),
    ("verify", ["{S}", "--device-key", "{K}/device.pub.pem", "--anchor", "3:" + "zz" * 32], None, 2, "not hex"),
    ("verify", ["{S}", "--device-key", "{K}/device.pub.pem", "--anchor", "{T}/h"], write("h", b"\x00"), 2, "anchor file"),
    ("verify", ["{S}", "--device-key", "{K}/device.pub.pem"], None, 0, ""),
    ("verify", ["{T}/cam/store", "--device-key", "{K}/device.pub.pem"],
     copy_good(lambda c: (c / "store" / "chain-head.cbor").unlink()), 1, "chain-head.cbor"),
    # --- bodycam-keys
    ("keys", ["authority", "--out", "{K}"], None, 2, "refusing to overwrite"),
    ("keys", ["recipient", "{T}/missing"], None, 2, "missing"),
    ("keys", ["recipient", "{T}/b"], write("b", BINARY), 2, "not a text"),
    ("keys", ["recipient", "{K}/device.key"], None, 2, "not an age identity"),
    ("keys", ["device", "--out", "/proc/bodycam/keys"], None, 1, "/proc/bodycam"),
    ("keys", [], None, 2, "required"),
    # --- bodycam-sim demo
    ("sim", ["demo", "--workdir", "{T}/w", "--devices", "0"], None, 2, "--devices"),
    ("sim", ["demo", "--workdir", "{T}/w", "--devices", "9"], None, 2, "--devices"),
    ("sim", ["demo", "--workdir", "{T}/w"], write("w/precious.txt", "x"), 2, "not empty"),
    ("sim", ["demo", "--workdir", "{T}/w"], write("w", "x"), 2, "is a file"),
    ("sim", ["demo", "--workdir", "{T}/w", "--store", "ftp://x"], None, 2, "--store"),
    ("sim", ["demo", "--workdir", "{T}/w", "--store", "s3://"], None, 2, "--store"),
    # --- bodycam-evidence
    ("evidence", ["--store", "{T}/nothing", "list"], None, 2, "no evidence store"),
    ("evidence", ["--store", "{T}", "list"], None, 2, "not an evidence store"),
    ("evidence", ["--store", "ftp://x", "list"], None, 2, "unsupported store"),
    ("evidence", ["--store", "s3://", "list"], None, 2, "not an S3 store URL"),
    ("evidence", ["--store", "{T}/ev", "list", "--since", "yesterday"], evidence_store(), 2, "ISO 8601"),
    # the office's directory of officers and the redaction policy (issue 24)
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "officers", "set", "--id", "../x", "--name", "A"],
     evidence_store(), 2, "--id"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "officers", "set", "--id", "KOD-1", "--name",
                  "A\u202eB"], evidence_store(), 2, "--name"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "officers", "set", "--id", "KOD-1", "--name",
                  "x" * 300], evidence_store(), 2, "--name"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "officers", "set", "--id", "KOD-1"],
     evidence_store(), 2, "--id and --name"),
    ("evidence", ["--store", "{T}/ev", "officers", "set", "--id", "KOD-1", "--name", "A"], evidence_store(), 2,
     "signing key"),
    ("evidence", ["--store", "{T}/ev", "officers", "drop"], evidence_store(), 2, "invalid choice"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "init", "--redaction-approval", "nobody"],
     evidence_store(), 2, "invalid choice"),
    ("evidence", ["--store", "{T}/ev", "show", "--recording", "x", "--by", "a"], evidence_store(), 2, "signing key"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "show", "--recording", "x", "--by", "a"],
     evidence_store(), 2, "no recording"),
    ("evidence", ["--store", "{T}/ev", "--key", "{K}/authority.key", "show", "--recording", "x", "--by", "a"],
     evidence_store(), 2, "age identity"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/missing.key", "purge"], evidence_store(), 2, "no such file"),
    ("evidence", ["--store", "{T}/ev", "--key", "{K}/device.key", "purge"], evidence_store(), 2,
     "not an office key"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "purge", "--now", "soon"], evidence_store(), 2,
     "ISO 8601"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "purge", "--by", "a;rm"], evidence_store(), 2,
     "user name"),
    ("evidence", ["--store", "{T}/ev", "--key", "{K}/device.key", "init", "--retention-days", "0"], None, 2,
     "retention"),
    ("evidence", ["--store", "{T}/ev", "init"], None, 2, "signing key"),
    ("evidence", ["--store", "{T}/ev", "--key", "{K}/device.key", "init", "--supervisor", "Frau Leitung"], None, 2,
     "argument --supervisor: 'Frau Leitung' is not a user name"),   # names the flag it is about, once
    ("evidence", ["--store", "{T}/ev", "audit", "--verify", "--expect", "1:zz"], evidence_store(), 2, "SEQ:HEX"),
    ("evidence", ["--store", "{T}/ev", "audit", "--expect", "1:00"], evidence_store(), 2, "--verify"),
    ("evidence", ["--store", "{T}/ev", "audit", "--verify"], evidence_store(audit_garbage), 1, "000000000002"),
    ("evidence", ["--store", "{T}/ev", "list"], evidence_store(audit_garbage), 1, "audit --verify"),
    ("evidence", ["--store", "{T}/ev", "list", "--after", "garbage!"], evidence_store(), 2, "page link is damaged"),
    ("evidence", ["--store", "{T}/ev", "list", "--after", "WzEsMl0"], evidence_store(), 2, "page link is damaged"),
    ("evidence", ["--store", "{T}/ev", "list", "--limit", "0"], evidence_store(), 2, "not a count"),
    ("evidence", ["--store", "{T}/ev", "list", "--limit", "-5"], evidence_store(), 2, "not a count"),
    ("evidence", ["--store", "{T}/ev", "list", "--due-days", "x"], evidence_store(), 2, "not a count"),
    ("evidence", ["--store", "{T}/ev", "list", "--sort", "random"], evidence_store(), 2, "invalid choice"),
    ("evidence", ["--store", "{T}/ev", "case", "--case", " / - "], evidence_store(), 2, "at least one letter"),
    ("evidence", ["--store", "{T}/ev", "verify", "--since", "gestern"], evidence_store(), 2, "ISO 8601"),
    ("evidence", ["--store", "{T}/ev", "verify", "--since", "2026-01-01", "--recording", "x"], evidence_store(), 2,
     "not allowed with"),
    ("evidence", ["--store", "{T}/ev", "audit", "--before", "abc"], evidence_store(), 2, "not a count"),
    ("evidence", ["--store", "{T}/ev", "--index", "/proc/bodycam/index", "list"], evidence_store(), 1,
     "/proc/bodycam"),
    ("evidence", ["--store", "{T}/ev", "--index", "{T}/f", "list"], lambda t, g: (evidence_store()(t, g),
                                                                              write("f", "x")(t, g)), 1, "index"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "export", "--recording", "x", "--identity",
                  "{K}/device.key", "--out", "{T}/x.mp4", "--by", "a"], evidence_store(), 2, "identity"),
    ("evidence", ["--store", "{T}/ev", "frobnicate"], None, 2, "invalid choice"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "users", "add", "--role", "clerk"],
     evidence_store(), 2, "--id and --role"),
    ("evidence", ["--store", "{T}/ev", "users", "add", "--id", "x", "--role", "boss"], evidence_store(), 2,
     "invalid choice"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "users", "passwd"], evidence_store(), 2,
     "needs --id"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "users", "disable", "--id", "nobody"],
     evidence_store(), 2, "no console user"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "users", "frobnicate", "--id", "x"],
     evidence_store(), 2, "invalid choice"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "hold", "--recording", "x", "--reason", "owi",
                  "--case", "AZ \u202e1", "--by", "a"], evidence_store(), 2, "no control or direction characters"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "purge", "--now", "2999-01-01"],
     evidence_store(), 2, "never the future"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "init", "--demo"], evidence_store(), 2,
     "cannot become one"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "release", "--recording", "x", "--reason",
                  "owi", "--by", "a"], evidence_store(), 2, "--why"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "export", "--recording", "x", "--identity",
                  "{K}/authority.key", "--out", "{T}/x.mp4", "--by", "a", "--lang", "fr"], evidence_store(), 2,
     "invalid choice"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "serve", "--identity", "{K}/authority.key",
                  "--idle-minutes", "0"], evidence_store(), 2, "not a count"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "serve", "--identity", "{T}/none.key"],
     evidence_store(), 2, "no such file"),
    ("evidence", ["--store", "{T}/ev", "--key", "{T}/k/office.key", "serve", "--identity", "{K}/authority.key",
                  "--port", "0"], evidence_store(), 2, "--port"),
    ("evidence", ["--store", "{T}/ev", "serve", "--identity", "{K}/authority.key"], evidence_store(), 2,
     "signing key"),
    # --- bodycam-dock
    ("dock", ["--config", "{T}/d.toml", "run", "--no-ui"], write("d.toml", "[dock]\nstore = 'ftp://x'\n"), 2, "dock.store"),
    ("dock", ["--config", "{T}/d.toml", "run", "--no-ui"], write("d.toml", "[dock]\nstore = 's3://'\n"), 2, "dock.store"),
    ("dock", ["--config", "{T}/d.toml", "run", "--no-ui"], write("d.toml", "[dock]\nstore = 's3://b?x=1'\n"), 2, "dock.store"),
    ("dock", ["--config", "{T}/d.toml", "run", "--no-ui"], write("d.toml", "[dock]\nstore = ''\n"), 2, "dock.store"),
    ("dock", ["--config", "{T}/missing.toml", "status"], None, 2, "not found"),
    ("dock", ["--config", "{T}/d.toml", "status"], write("d.toml", BINARY), 2, "not a text file"),
    ("dock", ["--config", "{T}/d.toml", "status"], write("d.toml", "[transfer]\nwindow = 0\n"), 2, "window"),
    ("dock", ["--config", "{T}/d.toml", "status"], write("d.toml", "[dock]\nwatch_dir = 'x'\n"), 2, "unknown key"),
    ("dock", ["--config", "{T}/d.toml", "status"], write("d.toml", "[dock]\nid = 'dock-\u202e1'\n"), 2, "U+202E"),
    ("dock", ["--config", "{T}/d.toml", "officers", "add", "--id", "A1", "--name", "Erika \u202eMuster"],
     write("d.toml", "[dock]\nstate = 's'\n"), 2, "U+202E"),
    ("dock", ["--config", "{T}/d.toml", "status"], write("d.toml", "[dock]\nstate = 's'\n"), 1, "not found"),
    ("dock", ["--config", "{T}/d.toml", "assign", "--device", "cam", "--officer", "o"],
     write("d.toml", "[dock]\nstate = 's'\n"), 2, "not enrolled"),
    ("dock", ["--config", "{T}/d.toml", "officers", "add", "--id", "A 1", "--name", "x"],
     write("d.toml", "[dock]\nstate = 's'\n"), 2, "officer id"),
    ("dock", ["--config", "{T}/d.toml", "officers", "add", "--id", "A1", "--name", "x", "--trained", "yesterday"],
     write("d.toml", "[dock]\nstate = 's'\n"), 2, "YYYY-MM-DD"),
    ("dock", ["--config", "{T}/d.toml", "officers", "add", "--id", "A1", "--name", "x", "--trained", "2999-01-01"],
     write("d.toml", "[dock]\nstate = 's'\n"), 2, "future"),
    ("dock", ["--config", "{T}/d.toml", "enroll", "--device-id", "cam", "--key", "{K}/authority.key"],
     write("d.toml", "[dock]\nstate = 's'\n"), 2, "not a PEM public key"),
    ("dock", ["--config", "{T}/d.toml", "enroll", "--device-id", "../x", "--key", "{K}/device.pub.pem"],
     write("d.toml", "[dock]\nstate = 's'\n"), 2, "device id"),
    ("dock", ["--config", "{T}/d.toml", "enroll", "--device-id", "cam", "--key", "{T}/nope.pem"],
     write("d.toml", "[dock]\nstate = 's'\n"), 2, "no such file"),
    ("dock", ["--config", "{T}/d.toml", "run", "--no-ui", "--until-idle", "0"],
     write("d.toml", "[dock]\nkey = 'nokey'\nwatch = 'w'\n"), 1, "nokey"),
    ("dock", ["--config", "{T}/d.toml", "run", "--no-ui", "--until-idle", "0"],
     lambda t, g: write("d.toml", f"[dock]\nkey = '{g}/keys/authority.key'\nwatch = 'w'\n")(t, g), 1, "age identity"),
]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r[0]}:{' '.join(r[1])[:60]}:{r[4]}" for r in ROWS])
def test_bad_input(row, good, tmp_path, capsys):
    cli, argv, setup, code, words = row
    if setup is not None:
        setup(tmp_path, good)
    argv = [a.replace("{T}", str(tmp_path)).replace("{K}", str(good / "keys")).replace("{S}", str(good / "store"))
            for a in argv]
    try:
        got = CLIS[cli](argv)
    except SystemExit as exc:
        got = exc.code
    captured = capsys.readouterr()
    err = captured.err + captured.out  # a verification report goes to stdout
    assert got == code, err
    assert words in err, err
    assert "Traceback" not in err
