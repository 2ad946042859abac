"""A provisioned machine booted under qemu (TCG: software emulation), driven through its agent.

* the disk is a virtio block device; a SIGKILL of qemu is a power cut of the guest (what its
  kernel had not yet written to the disk is lost; the host's page cache keeps the rest);
* the guest's serial console goes to ``console.log`` (the boot's lines, systemd's included);
* the bench's agent (:mod:`system.agent`) answers on a virtio serial port (a Unix socket here);
* the guest's port 8081 (the bench's proxy to the console) is forwarded to a loopback port
  here; qemu's user network is ``restrict=on``: the guest reaches nothing outside.

Every wait has a deadline; a machine that does not answer in time raises :class:`MachineError`
with the tail of its console.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MEMORY_MB = 2048   # the bound: at most 2 GiB


class MachineError(RuntimeError):
    """The machine did not boot, answer or stop in time."""


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def check(self, what: str) -> "Result":
        if self.rc != 0:
            raise MachineError(f"{what}: exit {self.rc}\n{self.out[-2000:]}\n{self.err[-2000:]}")
        return self


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Qemu:
    def __init__(self, workdir: Path, disk: Path, kernel: Path, initrd: Path, *,
                 memory_mb: int = MEMORY_MB, cpus: int = 2, extra_disks: tuple[Path, ...] = (),
                 arch: str = "amd64") -> None:
        self.workdir, self.disk, self.kernel, self.initrd = workdir, disk, kernel, initrd
        self.arch = arch
        self.memory_mb, self.cpus, self.extra_disks = memory_mb, cpus, extra_disks
        self.console = workdir / "console.log"
        self.agent_path = workdir / "agent.sock"
        self.console_port = free_port()
        self.proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._buf = b""
        self._ids = itertools.count(1)
        self.started_at = 0.0

    def argv(self) -> list[str]:
        # -cpu max: every instruction TCG emulates; the default qemu64 lacks x86-64-v2 (SSE4.2,
        # POPCNT), which NumPy 2's wheels need (without: "invalid opcode" at import)
        # arm64: qemu's "virt" board with a Cortex-A72 (a Raspberry Pi 4's core), Debian's arm64 kernel
        machine, console = (["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72"], "ttyAMA0") \
            if self.arch == "arm64" else (["qemu-system-x86_64", "-cpu", "max"], "ttyS0")
        argv = [*machine, "-accel", "tcg", "-m", str(self.memory_mb), "-smp", str(self.cpus),
                "-no-reboot", "-kernel", str(self.kernel), "-initrd", str(self.initrd),
                "-append", f"root=LABEL=bodycam rw console={console} panic=1 systemd.show_status=1 net.ifnames=1",
                "-drive", f"file={self.disk},format=raw,if=virtio,cache=writeback",
                "-chardev", f"socket,id=bench,path={self.agent_path},server=on,wait=off",
                "-device", "virtio-serial-pci", "-device", "virtserialport,chardev=bench,name=bench",
                "-nic", f"user,restrict=on,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{self.console_port}-:8081",
                "-serial", f"file:{self.console}", "-monitor", "none", "-display", "none"]
        for extra in self.extra_disks:
            argv += ["-drive", f"file={extra},format=raw,if=virtio,cache=writeback"]
        return argv

    def start(self) -> None:
        self.agent_path.unlink(missing_ok=True)
        self.console.write_bytes(b"")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "qemu.err", "wb"), start_new_session=True)
        deadline = time.monotonic() + 20
        while not self.agent_path.exists():
            self._alive("starting qemu")
            if time.monotonic() > deadline:
                raise MachineError("qemu did not create its agent socket in 20 s" + self.tail())
            time.sleep(0.1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(self.agent_path))
        self._buf = b""

    def _alive(self, what: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            err = (self.workdir / "qemu.err").read_text(errors="replace")[-2000:]
            raise MachineError(f"qemu ended ({self.proc.returncode}) while {what}: {err}" + self.tail())

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.console.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return ""
        return "\n--- console ---\n" + "\n".join(lines)

    def run(self, sh: str, timeout: float = 120, input: str = "") -> Result:
        """Run ``sh`` as root in the guest (through its agent), within ``timeout`` seconds."""
        assert self._sock is not None, "start() first"
        rid = next(self._ids)
        req = {"id": rid, "sh": sh, "timeout": timeout, "input": input}
        self._sock.sendall(json.dumps(req).encode() + b"\n")
        deadline = time.monotonic() + timeout + 30
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                try:
                    answer = json.loads(line)
                except ValueError:
                    continue
                if answer.get("id") == rid:
                    return Result(answer["rc"], answer["out"], answer["err"])
            left = deadline - time.monotonic()
            if left <= 0:
                raise MachineError(f"no answer to {sh!r} in {timeout + 30:.0f} s" + self.tail())
            self._alive(f"running {sh!r}")
            self._sock.settimeout(min(left, 1.0))
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise MachineError(f"the agent's socket closed while running {sh!r}" + self.tail())
            self._buf += chunk

    def wait_agent(self, timeout: float = 240) -> float:
        """Until the agent answers; returns the seconds since qemu started."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.run("true", timeout=5).rc == 0:
                    return time.monotonic() - self.started_at
            except MachineError:
                self._alive("booting")
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise MachineError(f"the machine did not answer in {timeout:.0f} s" + self.tail())
            time.sleep(1)

    def wait_for(self, sh: str, timeout: float, what: str, every: float = 1.0) -> Result:
        """Until ``sh`` exits 0 in the guest; its last result otherwise, as an error."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.run(sh, timeout=max(5.0, every * 5))
            if r.rc == 0:
                return r
            if time.monotonic() > deadline:
                raise MachineError(f"{what}: not within {timeout:.0f} s\n{r.out[-1500:]}\n{r.err[-1500:]}")
            time.sleep(every)

    def power_cut(self) -> None:
        """SIGKILL: the guest's kernel loses whatever it had not written to its disk."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close()

    def poweroff(self, timeout: float = 90) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._close()
            return
        try:
            self.run("systemctl --no-block poweroff", timeout=10)
        except MachineError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.power_cut()
        self._close()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "Qemu":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.power_cut()
