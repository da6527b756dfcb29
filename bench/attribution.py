"""What trusting the gateway and enforcing attribution cost the serving middleware per
request, in process: an exchange made and checked (``AuditedExchange`` and ``rejection``), as
the event loop runs it for every request, without and with them.

    .venv/bin/python bench/attribution.py [--requests 200000] [--bound-keys 1000]

End to end (HTTP, uvicorn, the writer and the uploader on the same two cores) the difference
drowns in noise: bench/middleware_overhead.py, with and without ``--no-attribution``.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from centralllm.audit import contract
from inference.attribution import Attribution
from inference.middleware import AuditedExchange

SECRET = b"0123456789abcdef0123456789abcdef0123456789a"
HEADERS = [
    (b"host", b"central-llm.internal"),
    (b"content-type", b"application/json"),
    (b"content-length", b"96"),
    (b"x-llm-source", b"bench"),
    (b"x-llm-user", b"bench"),
    (b"x-llm-request-type", b"chat"),
    (b"x-request-id", b"7c9e6679-7425-40de-944b-e07fc1f90ae7"),
]
FROM_GATEWAY = [
    (contract.GATEWAY_SECRET_HEADER.encode(), SECRET),
    (contract.API_KEY_ID_HEADER.encode(), b"bench-key"),
]


def per_request_us(headers: list, secret: bytes, attribution: Attribution, requests: int) -> float:
    scope = {"method": "POST", "path": "/v1/chat/completions", "headers": headers}
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(requests):
            AuditedExchange(scope, 1 << 20, secret).rejection(attribution)
        best = min(best, (time.perf_counter() - started) / requests)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--bound-keys", type=int, default=1000)
    options = parser.parse_args()
    unbound = Attribution("unused", Path(tempfile.mkdtemp()), every_seconds=60)
    bound = Attribution("unused", Path(tempfile.mkdtemp()), every_seconds=60)
    keys = {f"key-{number}": [f"project-{number}"] for number in range(options.bound_keys)}
    bound._load(json.dumps({"keys": {**keys, "bench-key": ["bench", "other"]}}).encode())
    cases = {
        "no gateway secret configured (before)": (HEADERS, b"", unbound),
        "from the gateway, key not bound": (HEADERS + FROM_GATEWAY, SECRET, unbound),
        f"from the gateway, key bound ({options.bound_keys} keys)": (
            HEADERS + FROM_GATEWAY,
            SECRET,
            bound,
        ),
    }
    before = None
    for name, (headers, secret, attribution) in cases.items():
        cost = per_request_us(headers, secret, attribution, options.requests)
        before = cost if before is None else before
        print(f"{name:45} {cost:6.2f} us per request ({cost - before:+.2f})")


if __name__ == "__main__":
    main()
