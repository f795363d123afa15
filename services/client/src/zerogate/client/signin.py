"""``zerogate sign-in`` / ``sign-out``: a person's client token from their identity provider.

The api is the OpenID relying party (see ``services/api/README.md``, "Sign-in").
The CLI's part (RFC 8252 for native apps, RFC 7636 PKCE):

1. make a PKCE verifier and challenge and a ``state``, listen on a loopback
   port for the browser's return;
2. ask the api to start (``GET /v1/sign_in/{account}``) and open the
   provider's page in the browser (or print it with ``--no-browser``);
3. the browser comes back to ``http://127.0.0.1:<port>/callback?code=...&state=...``
   with a one-time code (never a token);
4. exchange the code with the verifier (``POST /v1/sign_in/token``) for a
   client token, stored with mode 0600 where ``zerogate up`` finds it.

``sign-out`` revokes the token at the api (``DELETE /v1/sign_in/token``) and
deletes the file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where the signed-in client token is kept (``zerogate up`` reads it when
#: neither ZG_TOKEN nor ZG_TOKEN_PATH is set).
DEFAULT_TOKEN_FILE = "client-token"  # noqa: S105 - a file name, not a secret
SIGN_IN_TIMEOUT = 300.0
HTTP_TIMEOUT = 15.0


class SignInError(Exception):
    """Sign-in or sign-out failed; the message says why and what to do."""


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        """RFC 7636 §4.1–4.2: a 43-character verifier and its S256 challenge."""
        verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return cls(verifier, challenge)


def token_file(state_dir: Path) -> Path:
    return state_dir / DEFAULT_TOKEN_FILE


def store_token(path: Path, token: str) -> None:
    """Write the token readable by its owner only (0600), replacing any older one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    tmp.replace(path)


class _Callback(http.server.BaseHTTPRequestHandler):
    """Receives the one browser redirect and hands its query to the waiting CLI."""

    server: _CallbackServer

    def do_GET(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        if parsed.path != self.server.path:
            self.send_error(404)
            return
        query = dict(urllib.parse.parse_qsl(parsed.query))
        ok = "code" in query and query.get("state") == self.server.state
        body = (
            "Signed in to Zerogate. You can close this window."
            if ok
            else "Sign-in did not complete: " + query.get("error_description", "see the terminal")
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.result = query
        self.server.done.set()

    def log_message(self, format: str, *args: Any) -> None:
        del format, args  # the query holds a one-time code: keep it out of any log


class _CallbackServer(http.server.HTTPServer):
    def __init__(self, state: str) -> None:
        super().__init__(("127.0.0.1", 0), _Callback)
        self.state = state
        self.path = "/callback"
        self.result: dict[str, str] = {}
        self.done = threading.Event()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{self.path}"


def _api(
    method: str, url: str, *, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - the api's URL
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as resp:  # noqa: S310
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        with contextlib.suppress(ValueError):
            return exc.code, json.loads(raw) if raw else {}
        return exc.code, {}
    except (urllib.error.URLError, OSError) as exc:
        raise SignInError(f"cannot reach the api at {url.split('/v1/')[0]}: {exc}") from exc


def _problem(status: int, body: dict[str, Any]) -> str:
    detail = body.get("detail") or body.get("title") or "no detail"
    return f"HTTP {status}: {detail}"


def sign_in(
    api_url: str,
    account: str,
    *,
    provider: str | None = None,
    open_browser: bool = True,
    announce: Any = print,
    timeout: float = SIGN_IN_TIMEOUT,
) -> dict[str, Any]:
    """Run the whole flow; returns the api's token answer (``token``, ``expires_at``...)."""
    pkce = Pkce.new()
    state = secrets.token_urlsafe(32)
    server = _CallbackServer(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        params = {
            "redirect_uri": server.redirect_uri,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
            "state": state,
            "kind": "client",
        }
        if provider:
            params["provider"] = provider
        start = f"{api_url.rstrip('/')}/v1/sign_in/{urllib.parse.quote(account)}?"
        status, body = _api("GET", start + urllib.parse.urlencode(params))
        if status != 200 or "authorization_url" not in body:
            raise SignInError(f"the api refused to start signing in: {_problem(status, body)}")
        url = str(body["authorization_url"])
        if not (open_browser and webbrowser.open(url)):
            announce(f"Open this address in a browser to sign in:\n\n  {url}\n")
        else:
            announce("Your browser was opened to sign in.")
        announce(f"Waiting for the browser to come back to {server.redirect_uri} ...")
        if not server.done.wait(timeout):
            raise SignInError(f"no sign-in came back within {timeout:.0f} s; try again")
        result = server.result
    finally:
        server.shutdown()
        server.server_close()
    if result.get("state") != state:
        raise SignInError("the browser came back with another sign-in's state: try again")
    if "error" in result:
        raise SignInError(
            f"sign-in failed ({result['error']}): {result.get('error_description', '')}".strip()
        )
    exchange = {
        "code": result.get("code", ""),
        "code_verifier": pkce.verifier,
        "redirect_uri": server.redirect_uri,
    }
    status, token = _api("POST", f"{api_url.rstrip('/')}/v1/sign_in/token", body=exchange)
    if status != 200 or "token" not in token:
        raise SignInError(f"the api did not give a token: {_problem(status, token)}")
    return token


def sign_out(api_url: str, path: Path) -> bool:
    """Revoke the stored token at the api and delete it; False when there was none."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return False
    status, body = _api("DELETE", f"{api_url.rstrip('/')}/v1/sign_in/token", token=token)
    if status not in (204, 401):  # 401: already expired or revoked — gone either way
        raise SignInError(f"the api did not revoke the token: {_problem(status, body)}")
    path.unlink(missing_ok=True)
    return True
