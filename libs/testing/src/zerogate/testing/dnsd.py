"""DNS for the lab: a real dnsmasq (Debian's) in a namespace, and a namespace's resolv.conf.

:class:`Dnsmasq` answers from the records it is given (a hosts file, with any
number of addresses per name; ``--mx-host``, ``--txt-record``), on the addresses
it is given only
(``--bind-interfaces``), with a TTL of ``ttl`` on them (``--local-ttl``; dnsmasq's
default is 0) and no upstream but ``servers`` (``--no-resolv``, ``--server``): names
it does not know are refused, or NXDOMAIN under its ``local`` domains. It
logs every query to its log (``--log-queries``), so a test can tell who asked
what. It is the corporate resolver on a gateway's LAN, or a client's
upstream, or the baseline of a benchmark.

:func:`netns_resolv_conf` writes ``/etc/netns/<ns>/resolv.conf``: ``ip netns
exec`` bind-mounts it over ``/etc/resolv.conf`` for every process it starts
in that namespace (ip-netns(8)), which is how agents there find their
resolvers, and why rewriting it has to happen in place. The file and its
directory go when the lab closes.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from zerogate.testing.lab import LabProcess, Namespace, NetLabError, StartupFailed

NETNS_ETC = Path("/etc/netns")
READY_TIMEOUT = 10.0


def netns_resolv_conf(ns: Namespace, text: str) -> Path:
    """Give ``ns`` its own resolv.conf (before starting the processes that should see it)."""
    directory = NETNS_ETC / ns.name
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "resolv.conf"
    path.write_text(text)
    ns.lab.remove_on_close(directory)
    return path


def _query(name: str, qtype: int = 1, ident: int = 0x5A47) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return (
        ident.to_bytes(2, "big")
        + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + labels
        + (b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01")
    )


class Dnsmasq:
    """A dnsmasq in ``ns`` answering on ``listen`` (see the module doc)."""

    def __init__(
        self,
        ns: Namespace,
        listen: Sequence[str],
        *,
        hosts: Mapping[str, Sequence[str]] | None = None,
        mx: Mapping[str, str] | None = None,
        txt: Mapping[str, str] | None = None,
        local: Sequence[str] = (),
        port: int = 53,
        cache_size: int = 10_000,
        log_queries: bool = True,
        ttl: int = 300,
        servers: Sequence[str] = (),
    ) -> None:
        self.ns = ns
        self.listen = list(listen)
        self.hosts = {k: list(v) for k, v in (hosts or {}).items()}
        self.mx = dict(mx or {})
        self.txt = dict(txt or {})
        self.local = list(local)
        self.port = port
        self.cache_size = cache_size
        self.log_queries = log_queries
        self.ttl = ttl
        self.servers = list(servers)
        self.process: LabProcess | None = None
        self.config = ns.lab.workdir / f"dnsmasq-{ns.role}-{port}-{len(ns.lab.processes)}.conf"
        self.hosts_file = self.config.with_suffix(".hosts")

    def _config(self) -> str:
        lines = [
            "no-resolv", "no-hosts", "no-poll", "bind-interfaces", "keep-in-foreground",
            "log-facility=-", "pid-file=", "user=root", "domain-needed",
            f"port={self.port}", f"cache-size={self.cache_size}", f"local-ttl={self.ttl}",
        ]  # fmt: skip
        if self.log_queries:
            lines.append("log-queries")
        lines += [f"listen-address={address}" for address in self.listen]
        if self.hosts:
            lines.append(f"addn-hosts={self.hosts_file}")
        for name, target in self.mx.items():
            lines.append(f"mx-host={name},{target},10")
        for name, text in self.txt.items():
            lines.append(f'txt-record={name},"{text}"')
        lines += [f"local=/{domain}/" for domain in self.local]
        lines += [f"server={server}" for server in self.servers]
        return "\n".join(lines) + "\n"

    def start(self) -> Self:
        self.hosts_file.write_text(
            "".join(f"{a} {name}\n" for name, addresses in self.hosts.items() for a in addresses)
        )
        self.config.write_text(self._config())
        self.process = self.ns.spawn(["dnsmasq", f"--conf-file={self.config}"], label="dnsmasq")
        deadline = time.monotonic() + READY_TIMEOUT
        probe = next(iter(self.hosts), "ready.invalid")
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise StartupFailed(f"dnsmasq exited: {self.process.output()[-2000:]}")
            if self.ask(self.listen[0], probe) is not None:
                return self
            time.sleep(0.05)
        raise StartupFailed(f"dnsmasq did not answer: {self.process.output()[-2000:]}")

    def ask(self, server: str, name: str, qtype: int = 1, timeout: float = 0.5) -> bytes | None:
        """One raw UDP query from inside the namespace; the answer's bytes or None."""
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        sock = self.ns.socket(family, socket.SOCK_DGRAM)
        with sock:
            sock.settimeout(timeout)
            try:
                sock.sendto(_query(name, qtype), (server, self.port))
                return sock.recv(65535)
            except OSError:
                return None

    def queries(self) -> list[str]:
        """The names asked so far (from the query log)."""
        if self.process is None:
            return []
        out = []
        for line in self.process.output().splitlines():
            if "query[" in line and " from " in line:
                with contextlib.suppress(IndexError):
                    out.append(line.split("] ", 1)[1].split(" from ", 1)[0])
        return out

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["Dnsmasq", "NetLabError", "netns_resolv_conf"]
