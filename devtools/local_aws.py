"""Run the local AWS (moto server with recorded state) in the foreground, as docker compose does.

The console image has no Java, so there DynamoDB stays in moto (``--no-dynamodb-local``)."""

import argparse
import signal
import sys
import time
from pathlib import Path

from devtools.services import LocalAWS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5100)
    parser.add_argument("--state-dir", type=Path, default=Path("var/local-aws"))
    parser.add_argument("--no-dynamodb-local", action="store_true", help="moto serves DynamoDB")
    args = parser.parse_args()
    local_aws = LocalAWS(
        args.port,
        state_dir=args.state_dir,
        host=args.host,
        dynamodb_local=not args.no_dynamodb_local,
    ).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"local AWS on {args.host}:{args.port}, state in {args.state_dir}", flush=True)
    try:
        while local_aws.alive():
            time.sleep(1)
    finally:
        local_aws.stop()


if __name__ == "__main__":
    main()
