"""``bodycam-verify STORE --device-key PEM [--anchor HEAD] [--identity KEY --decrypt-to OUT] [--json]``

STORE is a camera store (the directory holding ``segments/`` and ``chain-head.cbor``)
or its ``segments/`` directory. Exit status 0 when everything verifies, 1 when
anything does not (the report names each file and what is wrong) or the files
cannot be read or written, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from common import keys, signed
from common.chain_head import ChainHead, parse_anchor, read_head
from dock.verify import NothingToVerify, VerifyReport, verify_store


def load_anchor(text: str, key) -> ChainHead:
    """``SEQ:SHA256HEX``, or the path of a chain-head.cbor saved earlier (signature checked)."""
    path = Path(text)
    if path.is_file():
        try:
            return read_head(path.read_bytes(), key)
        except signed.SignatureError as exc:
            raise ValueError(f"anchor file {path}: {exc}") from None
    return parse_anchor(text)


def print_report(report: VerifyReport) -> None:
    for p in report.problems:
        print(f"PROBLEM  {p.file}: {p.problem}")
    for s in report.segments:
        state = "ok" if s.ok else "FAIL"
        print(f"{s.seq:8d} {s.file} {state} {'; '.join(s.problems)}".rstrip())
    for n in report.notes:
        print(f"note     {n.file}: {n.problem}")
    if report.head:
        print(f"head     seq {report.head['seq']} (anchor for the next check: {report.head['anchor']})")
    print("all verified" if report.ok else "VERIFICATION FAILED")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bodycam-verify", description="verify (and decrypt) a camera store")
    parser.add_argument("dir", type=Path, help="camera store (with segments/ and chain-head.cbor) or its segments/")
    parser.add_argument("--device-key", type=Path, required=True, help="the camera's public key (PEM)")
    parser.add_argument("--anchor", help="the head the dock saw last: SEQ:SHA256HEX or a saved chain-head.cbor")
    parser.add_argument("--identity", type=Path, help="authority identity file, to decrypt")
    parser.add_argument("--decrypt-to", type=Path, help="write decrypted .ts files into this directory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"{args.dir} is not a directory (pass the camera store, e.g. run/shift/store)")
    if args.decrypt_to and not args.identity:
        parser.error("--decrypt-to needs --identity")
    if args.decrypt_to and args.decrypt_to.exists() and not args.decrypt_to.is_dir():
        parser.error(f"--decrypt-to {args.decrypt_to} exists and is not a directory; name a directory")
    try:
        key = keys.load_verify_key(args.device_key)
        identity = keys.load_identity(args.identity) if args.identity else None
        anchor = load_anchor(args.anchor, key) if args.anchor else None
    except FileNotFoundError as exc:
        parser.error(f"{exc.filename}: no such file")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        parser.error(str(exc))
    try:
        if args.decrypt_to:
            args.decrypt_to.mkdir(parents=True, exist_ok=True)
        report = verify_store(args.dir, key, identity=identity, decrypt_to=args.decrypt_to, anchor=anchor)
    except NothingToVerify as exc:
        print(f"bodycam-verify: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bodycam-verify: cannot read or write {exc.filename or ''}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
