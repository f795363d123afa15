"""The images' HEALTHCHECK: GET http://127.0.0.1:<port>/healthz, exit 0 on 200.

Usage: ``python3 healthcheck.py PORT_VARIABLE DEFAULT_PORT`` — the port is read
from the service's own setting (``ZG_API_PORT``, ``ZG_SIGNALING_PORT``,
``ZG_RELAY_HTTP_PORT``) so the check follows it. Standard library only: the
images carry no curl or wget.
"""

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    variable, default = argv[1], argv[2]
    url = f"http://127.0.0.1:{os.environ.get(variable) or default}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)  # noqa: T201 - shown by docker inspect
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
