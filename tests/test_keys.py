"""Key files: age's own text formats, PEM for Ed25519, mode 0600, no silent overwrite."""

from __future__ import annotations

import stat
import subprocess

import pytest

from common import keys, keys_cli
from tests.conftest import need


def test_authority_files_match_age_keygen(tmp_path):
    files = keys.create_authority(tmp_path)
    assert stat.S_IMODE(files.identity.stat().st_mode) == 0o600
    assert files.identity.read_text().splitlines()[2].startswith("AGE-SECRET-KEY-1")
    derived = subprocess.run([need("age-keygen"), "-y", str(files.identity)], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert derived == files.recipient == files.recipient_file.read_text().strip()


def test_age_keygen_identity_loads(tmp_path):
    path = tmp_path / "k.txt"
    subprocess.run([need("age-keygen"), "-o", str(path)], capture_output=True, check=True)
    secret = keys.load_identity(path)
    public_line = [l for l in path.read_text().splitlines() if "public key" in l][0]
    assert keys.recipient_of(secret) == public_line.split(": ")[1]


def test_device_key_is_pkcs8_0600_and_refuses_overwrite(tmp_path):
    d = keys.create_device_key(tmp_path)
    assert stat.S_IMODE(d.private.stat().st_mode) == 0o600
    assert d.private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    signer = keys.load_signing_key(d.private)
    assert keys.fingerprint(keys.load_verify_key(d.public)) == keys.fingerprint(signer.public_key()) == d.fingerprint
    with pytest.raises(keys.KeyFileError, match="refusing to overwrite"):
        keys.create_device_key(tmp_path)


@pytest.mark.parametrize("bad, message", [
    ("AGE-SECRET-KEY-1QQQ", "recipient must start with 'age1'"),
    ("age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "not valid Bech32"),
])
def test_bad_recipient_says_what_is_wrong(bad, message):
    with pytest.raises(keys.KeyFileError, match=message):
        keys.parse_recipient(bad)


def test_cli_creates_both_and_refuses_overwrite(tmp_path, capsys):
    assert keys_cli.main(["authority", "--out", str(tmp_path), "--json"]) == 0
    assert '"recipient": "age1' in capsys.readouterr().out
    assert keys_cli.main(["device", "--out", str(tmp_path)]) == 0
    with pytest.raises(SystemExit) as exc:
        keys_cli.main(["device", "--out", str(tmp_path)])
    assert exc.value.code == 2
