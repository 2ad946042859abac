"""``bodycam-verify DIR --device-key PEM [--identity KEY --decrypt-to OUT] [--json]``

Exit status 0 when everything verifies, 1 when anything does not (the report says
what), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from common import keys
from dock.verify import verify_store


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bodycam-verify", description="verify (and decrypt) camera segments")
    parser.add_argument("dir", type=Path, help="directory with NNNNNNNN.manifest / .ts.age files")
    parser.add_argument("--device-key", type=Path, required=True, help="the camera's public key (PEM)")
    parser.add_argument("--identity", type=Path, help="authority identity file, to decrypt")
    parser.add_argument("--decrypt-to", type=Path, help="write decrypted .ts files here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"{args.dir} is not a directory")
    if args.decrypt_to and not args.identity:
        parser.error("--decrypt-to needs --identity")
    try:
        key = keys.load_verify_key(args.device_key)
        identity = keys.load_identity(args.identity) if args.identity else None
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    report = verify_store(args.dir, key, identity=identity, decrypt_to=args.decrypt_to)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        if report.chain_error:
            print(f"CHAIN BROKEN: {report.chain_error}")
        for s in report.segments:
            print(f"{s.seq:8d} {s.file} {'ok' if s.ok else 'FAIL'} {'; '.join(s.problems)}")
        print("all verified" if report.ok else "VERIFICATION FAILED")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
