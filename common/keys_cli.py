"""``bodycam-keys``: create the evidence office's age key pair and device signing keys.

    bodycam-keys authority --out DIR   # DIR/authority.key (age identity, 0600) + DIR/authority.pub
    bodycam-keys device --out DIR      # DIR/device.key (Ed25519 PKCS#8, 0600) + DIR/device.pub.pem
    bodycam-keys office --out DIR      # DIR/office.key: the evidence office signs its audit records
    bodycam-keys recipient FILE        # print the age1… recipient of an identity file

Custody of the office's identity (docs/keys.md; a passphrase is asked on the terminal,
or read as one line from standard input when that is not a terminal):

    bodycam-keys protect --identity FILE --out FILE.age     # passphrase-encrypted (age scrypt; age -d opens it)
    bodycam-keys split --identity FILE --threshold 2 --shares 3 --out DIR [--holder NAME …]
    bodycam-keys recover --share FILE --share FILE [--segment SEG.ts.age] [--out FILE [--protect]]
                                       # with --segment and no --out: the recovery drill
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from common import custody, keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bodycam-keys", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, what in (("authority", "age identity + recipient of the evidence office"),
                       ("device", "Ed25519 signing key of one camera (or a dock)"),
                       ("office", "Ed25519 signing key of the evidence office (audit trail)")):
        p = sub.add_parser(name, help=f"create the {what}")
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--name", default=name)
        p.add_argument("--force", action="store_true", help="overwrite existing key files")
        p.add_argument("--json", action="store_true")
    p = sub.add_parser("recipient", help="print the recipient of an identity file")
    p.add_argument("identity", type=Path)
    p = sub.add_parser("protect", help="encrypt the office's identity with a passphrase")
    p.add_argument("--identity", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("split", help="split the office's identity into M-of-N shares (SLIP-39 words)")
    p.add_argument("--identity", type=Path, required=True)
    p.add_argument("--threshold", type=int, default=2)
    p.add_argument("--shares", type=int, default=3)
    p.add_argument("--holder", action="append", default=[], help="who keeps share 1, 2, … (repeat)")
    p.add_argument("--out", type=Path, required=True, help="directory for share-N.txt")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("recover", help="recombine shares: the recovery drill, or the identity back")
    p.add_argument("--share", type=Path, action="append", required=True)
    p.add_argument("--segment", type=Path, help="a segment (.ts.age) the identity must open: the drill")
    p.add_argument("--out", type=Path, help="write the recovered identity here (never over a file)")
    p.add_argument("--protect", action="store_true", help="with --out: passphrase-encrypted")
    p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command in ("protect", "split", "recover"):
            result = _custody(args)
        elif args.command == "authority":
            a = keys.create_authority(args.out, name=args.name, force=args.force)
            result = {"identity": str(a.identity), "recipient_file": str(a.recipient_file),
                      "recipient": a.recipient}
        elif args.command in ("device", "office"):
            d = keys.create_device_key(args.out, name=args.name, force=args.force)
            result = {"private": str(d.private), "public": str(d.public), "fingerprint": d.fingerprint}
        else:
            print(keys.recipient_of(keys.load_identity(args.identity, passphrase=lambda: _ask("Passphrase: "))))
            return 0
    except FileNotFoundError as exc:
        if args.command != "recipient":  # an output directory that cannot be made
            print(f"bodycam-keys: error: cannot create {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 1
        parser.error(f"{exc.filename}: no such file")
    except (keys.KeyFileError, custody.CustodyError) as exc:
        parser.error(str(exc))
    except FileExistsError as exc:
        parser.error(f"{exc.filename} exists; key material is never written over a file")
    except OSError as exc:
        print(f"bodycam-keys: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


def _ask(prompt: str, *, new: bool = False) -> str:
    """A passphrase from the terminal (twice when it is new), else one line of stdin."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass
    first = getpass.getpass(prompt)
    if new and getpass.getpass("The same again: ") != first:
        raise custody.CustodyError("the two passphrases differ; nothing was written")
    return first


def _write_private(path: Path, data: bytes) -> None:
    """0600, never over an existing file, on disk before we say it is done."""
    import os
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _custody(args: argparse.Namespace) -> dict[str, object]:
    if args.command in ("protect", "split"):
        identity = keys.load_identity(args.identity, passphrase=lambda: _ask("Passphrase of the identity: "))
    if args.command == "protect":
        if not args.out.parent.is_dir():
            raise custody.CustodyError(f"--out: directory {args.out.parent} does not exist")
        _write_private(args.out, custody.protect(identity, _ask("New passphrase (12 characters or more): ",
                                                                new=True)))
        return {"protected": str(args.out), "recipient": keys.recipient_of(identity),
                "open_with": f"age -d {args.out}"}
    if args.command == "split":
        words = custody.split(identity, args.threshold, args.shares)
        if len(args.holder) > len(words):
            raise custody.CustodyError(f"{len(args.holder)} holders named for {len(words)} shares")
        args.out.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = []
        for n, w in enumerate(words, start=1):
            share = custody.ShareFile(n, len(words), args.threshold, keys.recipient_of(identity),
                                      args.holder[n - 1] if n <= len(args.holder) else "", w)
            path = args.out / f"share-{n}.txt"
            _write_private(path, share.text().encode())
            files.append(str(path))
        return {"shares": files, "threshold": args.threshold, "recipient": keys.recipient_of(identity),
                "drill": f"bodycam-keys recover --share {files[0]} --share {files[1 % len(files)]} "
                         "--segment SEGMENT.ts.age"}
    identity = custody.recover([custody.read_share(p) for p in args.share])
    result: dict[str, object] = {"recovered": keys.recipient_of(identity)}
    if args.segment is not None:
        from common import age_format
        try:
            data = args.segment.read_bytes()
        except FileNotFoundError:
            raise custody.CustodyError(f"--segment {args.segment}: no such file") from None
        try:
            opened = age_format.recover(data, identity)
        except age_format.AgeError as exc:
            raise custody.CustodyError(f"the recovered identity does not open {args.segment} ({exc}): it was "
                                       "encrypted to another recipient, or is damaged") from None
        result["drill"] = f"the shares open {args.segment}: {len(opened.plaintext)} bytes of footage"
    if args.out is not None:
        data = custody.protect(identity, _ask("New passphrase (12 characters or more): ", new=True)) \
            if args.protect else (f"# recipient: {keys.recipient_of(identity)}\n"
                                  f"{keys.format_identity(identity)}\n").encode()
        _write_private(args.out, data)
        result["identity"] = str(args.out)
    elif args.protect:
        raise custody.CustodyError("--protect goes with --out")
    return result


if __name__ == "__main__":
    sys.exit(main())
