"""Network namespaces for security-group tests: a client, a routing host and two "VMs".

::

    client (10.211.1.2, .3) --veth-- host (routes, ip_forward=1) --tap-- vm1 (10.211.2.10)
                                                                   --tap-- vm2 (10.211.3.10)

The host ends of the VMs' veth pairs stand for tap devices; certgate's rules are loaded in the
host namespace. All addresses exist only inside these namespaces, and every connection is made
from inside one of them. ``Topology.destroy`` removes everything; it runs in a ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AGENT = Path(__file__).with_name("nsagent.py")

CLIENT_OK = "10.211.1.2"
CLIENT_OTHER = "10.211.1.3"
HOST_CLIENT_SIDE = "10.211.1.1"
VM1 = "10.211.2.10"
VM2 = "10.211.3.10"


def netfilter_unavailable() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "security-group packet tests need root (network namespaces, nft)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (bash scripts/setup.sh installs it)"
    probe = f"cgprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        nft = subprocess.run(["ip", "netns", "exec", probe, "nft", "list", "ruleset"],
                             capture_output=True, text=True)
        if nft.returncode != 0:
            return f"nftables cannot run in a namespace: {nft.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def run(*args: str) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")


class Agent:
    """One nsagent process inside a namespace."""

    def __init__(self, netns: str, name: str) -> None:
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, str(AGENT), name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("namespace agent died")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Topology:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    namespaces: list[str] = field(default_factory=list)
    agents: dict[str, Agent] = field(default_factory=dict)

    def ns(self, role: str) -> str:
        return f"cg{self.tag}-{role}"

    def ifname(self, role: str) -> str:
        """Host-side interface names (the "taps"), unique per topology, at most 15 chars."""
        return f"t{self.tag}{role}"

    def create(self) -> None:
        for role in ("client", "host", "vm1", "vm2"):
            run("ip", "netns", "add", self.ns(role))
            self.namespaces.append(self.ns(role))
            run("ip", "-n", self.ns(role), "link", "set", "lo", "up")
        host = self.ns("host")
        run("ip", "netns", "exec", host, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        for conf in ("all", "default"):
            run("ip", "netns", "exec", host, "sysctl", "-q", "-w",
                f"net.ipv4.conf.{conf}.rp_filter=0")
        self._link("client", "cli", [f"{CLIENT_OK}/24", f"{CLIENT_OTHER}/24"],
                   f"{HOST_CLIENT_SIDE}/24")
        self._link("vm1", "vm1", [f"{VM1}/24"], "10.211.2.1/24")
        self._link("vm2", "vm2", [f"{VM2}/24"], "10.211.3.1/24")
        for role in ("client", "vm1", "vm2"):
            self.agents[role] = Agent(self.ns(role), role)

    def _link(self, role: str, short: str, inside: list[str], host_side: str) -> None:
        host_if = self.ifname(short)
        run("ip", "link", "add", host_if, "netns", self.ns("host"), "type", "veth",
            "peer", "name", "eth0", "netns", self.ns(role))
        for address in inside:
            run("ip", "-n", self.ns(role), "addr", "add", address, "dev", "eth0")
        run("ip", "-n", self.ns(role), "link", "set", "eth0", "up")
        gateway = host_side.split("/")[0]
        run("ip", "-n", self.ns(role), "route", "add", "default", "via", gateway,
            "src", inside[0].split("/")[0])
        run("ip", "-n", self.ns("host"), "addr", "add", host_side, "dev", host_if)
        run("ip", "-n", self.ns("host"), "link", "set", host_if, "up")
        run("ip", "netns", "exec", self.ns("host"), "sysctl", "-q", "-w",
            f"net.ipv4.conf.{host_if}.rp_filter=0")

    def destroy(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        self.agents.clear()
        for netns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        self.namespaces.clear()

    # -- traffic ------------------------------------------------------------------------------

    def tcp(self, src_role: str, dst: str, port: int, *, source: str | None = None,
            expect: bool) -> bool:
        """Whether a TCP connection from ``src_role`` reaches ``dst:port``.

        A refused connection waits for nothing; one that is dropped can only be told by
        silence, so the wait is short when the test expects a drop and long otherwise.
        """
        answer = self.agents[src_role].ask(op="connect_tcp", host=dst, port=port,
                                           source=source, timeout=10.0 if expect else 0.7)
        return bool(answer["ok"])

    def udp_reaches(self, src_role: str, source: str, dst_role: str, dst: str, port: int,
                    *, expect: bool) -> list[str]:
        """Sources from which a datagram sent by ``src_role`` arrived at ``dst_role``."""
        self.agents[src_role].ask(op="send_udp", source=source, host=dst, port=port,
                                  payload="probe")
        answer = self.agents[dst_role].ask(op="recv_udp", port=port,
                                           timeout=10.0 if expect else 0.7)
        return [peer for _, peer in answer["received"]]
