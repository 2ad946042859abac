"""``bodycam-keys``: create the evidence office's age key pair and device signing keys.

    bodycam-keys authority --out DIR   # DIR/authority.key (age identity, 0600) + DIR/authority.pub
    bodycam-keys device --out DIR      # DIR/device.key (Ed25519 PKCS#8, 0600) + DIR/device.pub.pem
    bodycam-keys office --out DIR      # DIR/office.key: the evidence office signs its audit records
    bodycam-keys recipient FILE        # print the age1… recipient of an identity file
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from common import keys


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
    args = parser.parse_args(argv)
    try:
        if args.command == "authority":
            a = keys.create_authority(args.out, name=args.name, force=args.force)
            result = {"identity": str(a.identity), "recipient_file": str(a.recipient_file),
                      "recipient": a.recipient}
        elif args.command in ("device", "office"):
            d = keys.create_device_key(args.out, name=args.name, force=args.force)
            result = {"private": str(d.private), "public": str(d.public), "fingerprint": d.fingerprint}
        else:
            print(keys.recipient_of(keys.load_identity(args.identity)))
            return 0
    except FileNotFoundError as exc:
        if args.command != "recipient":  # an output directory that cannot be made
            print(f"bodycam-keys: error: cannot create {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 1
        parser.error(f"{exc.filename}: no such file")
    except keys.KeyFileError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"bodycam-keys: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
