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


# ---------------------------------------------------------------- custody of the office's identity
PASSPHRASE = "correct horse battery staple"


def _keys_cli(args: list[str], stdin: str = "") -> subprocess.CompletedProcess:
    import sys
    return subprocess.run([sys.executable, "-m", "common.keys_cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=60)


def _stock_age_decrypt_with_passphrase(path, out, passphrase: str) -> int:
    """Debian's age asks for a passphrase on the terminal only: give it one (a pty)."""
    import os
    import pty
    import time
    need("age")
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("age", ["age", "--decrypt", "--output", str(out), str(path)])
    seen, deadline = b"", time.monotonic() + 30
    while b"passphrase" not in seen.lower() and time.monotonic() < deadline:
        try:
            seen += os.read(fd, 1024)
        except OSError:
            break
    os.write(fd, passphrase.encode() + b"\n")
    while True:  # drain until age exits
        try:
            if not os.read(fd, 1024):
                break
        except OSError:
            break
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_protected_identity_opens_in_stock_age_and_in_our_tools(tmp_path):
    a = keys.create_authority(tmp_path)
    protected = tmp_path / "authority.key.age"
    done = _keys_cli(["protect", "--identity", str(a.identity), "--out", str(protected)], PASSPHRASE + "\n")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(protected.stat().st_mode) == 0o600 and b"AGE-SECRET-KEY" not in protected.read_bytes()
    assert _stock_age_decrypt_with_passphrase(protected, tmp_path / "clear.key", PASSPHRASE) == 0
    assert keys.load_identity(tmp_path / "clear.key") == keys.load_identity(a.identity)
    assert keys.load_identity(protected, passphrase=lambda: PASSPHRASE) == keys.load_identity(a.identity)
    with pytest.raises(keys.KeyFileError, match="passphrase does not open"):
        keys.load_identity(protected, passphrase=lambda: "wrong passphrase!")
    with pytest.raises(keys.KeyFileError, match="protected by a passphrase"):
        keys.load_identity(protected)
    short = _keys_cli(["protect", "--identity", str(a.identity), "--out", str(tmp_path / "x.age")], "short\n")
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    again = _keys_cli(["protect", "--identity", str(a.identity), "--out", str(protected)], PASSPHRASE + "\n")
    assert again.returncode == 2 and "never written over a file" in again.stderr


def test_two_of_three_shares_pass_the_recovery_drill_on_real_footage(tmp_path):
    """Split, destroy the key, recombine two shares, and open a segment encrypted by stock age."""
    need("age")
    a = keys.create_authority(tmp_path / "k")
    segment = tmp_path / "00000001.ts.age"
    subprocess.run(["age", "-r", a.recipient, "-o", str(segment)], input=b"\x47" * 188 * 40, check=True)
    split = _keys_cli(["split", "--identity", str(a.identity), "--out", str(tmp_path / "shares"),
                       "--holder", "Leitung", "--holder", "DSB", "--holder", "IT", "--json"])
    assert split.returncode == 0, split.stderr
    shares = [tmp_path / "shares" / f"share-{n}.txt" for n in (1, 2, 3)]
    assert all(stat.S_IMODE(s.stat().st_mode) == 0o600 for s in shares)
    original = keys.load_identity(a.identity)
    a.identity.unlink()                                   # the server's copy is gone
    for pair in ((0, 1), (0, 2), (1, 2)):
        drill = _keys_cli(["recover", "--share", str(shares[pair[0]]), "--share", str(shares[pair[1]]),
                           "--segment", str(segment), "--json"])
        assert drill.returncode == 0, drill.stderr
        assert "7520 bytes of footage" in drill.stdout
    assert not a.identity.exists()                        # a drill writes no key
    back = _keys_cli(["recover", "--share", str(shares[2]), "--share", str(shares[0]), "--out", str(a.identity)])
    assert back.returncode == 0 and keys.load_identity(a.identity) == original
    # what must fail, clearly
    one = _keys_cli(["recover", "--share", str(shares[0])])
    assert one.returncode == 2 and "1 share(s) given, 2 needed" in one.stderr
    twice = _keys_cli(["recover", "--share", str(shares[0]), "--share", str(shares[0])])
    assert twice.returncode == 2 and "the same share was given twice" in twice.stderr
    typo = tmp_path / "typo.txt"
    lines = shares[1].read_text().splitlines()
    words = lines[-1].split()
    words[5] = words[6]                                   # a word written down wrong
    typo.write_text("\n".join(lines[:-1] + [" ".join(words)]) + "\n")
    bad = _keys_cli(["recover", "--share", str(shares[0]), "--share", str(typo)])
    assert bad.returncode == 2 and "do not combine" in bad.stderr
    other = keys.create_authority(tmp_path / "other")
    _keys_cli(["split", "--identity", str(other.identity), "--out", str(tmp_path / "other-shares")])
    mixed = _keys_cli(["recover", "--share", str(shares[0]), "--share", str(tmp_path / "other-shares/share-2.txt")])
    assert mixed.returncode == 2 and "different identities" in mixed.stderr
    wrong_segment = tmp_path / "other.ts.age"
    subprocess.run(["age", "-r", other.recipient, "-o", str(wrong_segment)], input=b"x" * 100, check=True)
    miss = _keys_cli(["recover", "--share", str(shares[0]), "--share", str(shares[1]), "--segment", str(wrong_segment)])
    assert miss.returncode == 2 and "does not open" in miss.stderr
    assert _keys_cli(["recover", "--share", str(tmp_path / "nope.txt")]).returncode == 2
    assert _keys_cli(["split", "--identity", str(other.identity), "--out", str(tmp_path / "x"),
                      "--threshold", "1"]).returncode == 2
