"""What a running client changed on the host, on disk, so a start after a crash can undo it.

The TUN and every route through it vanish with the process, but two changes
outlive a crash: the policy-routing rules of the Internet resource
(:mod:`zerogate.dataplane.policy`) and a rewritten ``/etc/resolv.conf``
(:mod:`zerogate.client.dnscontrol`). While they are in place they are listed
in ``<ZG_STATE_DIR>/client-<interface>.host.json`` (with the pid that made
them); a client starting on that interface undoes what the file lists first
(:meth:`HostState.recover`), unless that pid still runs a client. The file
lives in the state directory rather than ``/run`` because a rewritten
resolv.conf also outlives a reboot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from zerogate.client import dnscontrol
from zerogate.common.errors import ConfigError

log = logging.getLogger(__name__)


def _running_client(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"zerogate" in cmdline


class HostState:
    """The record of one interface's host changes."""

    def __init__(self, state_dir: Path, interface: str) -> None:
        self.path = state_dir / f"client-{interface}.host.json"
        self.data: dict[str, Any] = {}

    def record(self, **changes: Any) -> None:
        """Note changes (``rules=[...]``, ``dns={...}``; ``None`` drops one) and write."""
        for key, value in changes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
        if not self.data.keys() - {"pid"}:
            self.clear()
            return
        self.data["pid"] = os.getpid()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data))
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("cannot keep the host changes on disk: %s", exc.strerror)

    def clear(self) -> None:
        self.data = {}
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def recover(self) -> list[str]:
        """Undo what a run that did not stop cleanly left; returns what was undone."""
        try:
            saved = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            log.warning("unreadable host state; ignoring it", extra={"path": str(self.path)})
            self.clear()
            return []
        if not isinstance(saved, dict):
            self.clear()
            return []
        pid = saved.get("pid")
        if isinstance(pid, int) and _running_client(pid):
            raise ConfigError(
                f"another zerogate client (pid {pid}) runs with {self.path.name}; stop it first"
            )
        undone: list[str] = []
        rules = saved.get("rules")
        if isinstance(rules, list) and rules:
            from zerogate.dataplane.policy import remove_rules

            if remove_rules(r for r in rules if isinstance(r, dict)):
                undone.append("routing rules")
        dns = saved.get("dns")
        if isinstance(dns, dict) and dnscontrol.restore_saved(dns):
            undone.append("resolv.conf")
        self.clear()
        if undone:
            log.info("undid what a crashed run left", extra={"undone": ",".join(undone)})
        return undone
