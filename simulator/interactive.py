"""``bodycam-sim device`` without a script: the camera in a terminal, in real time.

Keys: p press · d double press · h hold 3.5 s · l long hold 5.5 s · b battery −10 % ·
f fill storage · k dock/undock · q quit. A live panel shows state, LEDs and the last events.
"""

from __future__ import annotations

import select
import sys
import termios
import tty

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from simulator.device_sim import SimDevice

LED_STYLE = {"red": "bold red", "green": "bold green", "amber": "bold yellow"}


def _panel(sim: SimDevice) -> Panel:
    rt = sim.runtime
    leds = Text()
    for name, on in rt.hw.led_states().items():
        leds.append(f" ● {name} ", style=LED_STYLE[name] if on else "dim")
    info = Table.grid(padding=(0, 2))
    info.add_row("state", Text(rt.state.value, style="bold"))
    info.add_row("LEDs", leds)
    info.add_row("buffer", f"{rt.buffer.duration_us / 1e6:5.1f} s, {rt.buffer.nbytes / 1e6:5.1f} MB")
    info.add_row("battery", f"{sim.power.level:.0f} %" if sim.power.level is not None else "mains")
    info.add_row("disk free", f"{sim.disk.free_bytes() / (1 << 20):,.0f} MiB")
    info.add_row("warnings", ", ".join(sorted(rt.warnings)) or "-")
    events = Table("t", "event", "state", box=None)
    for e in rt.events.entries[-8:]:
        events.add_row(f"{(e['mono_us'] - sim.boot_us) / 1e6:7.1f}", e["kind"], e["state"])
    keys = Text("p press · d double · h hold · l long hold · b battery −10% · f fill storage · k dock · q quit",
                style="dim")
    return Panel(Group(info, events, keys), title="open bodycam (simulated)")


def run_interactive(sim: SimDevice) -> None:
    if not sys.stdin.isatty():
        raise SystemExit("bodycam-sim device: interactive mode needs a terminal; use --script FILE")
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    sim.runtime.boot()
    try:
        tty.setcbreak(fd)
        with Live(_panel(sim), refresh_per_second=10, screen=False) as live:
            while sim.runtime.state.value != "SHUTDOWN":
                if sim.runtime.stop_requested:
                    sim.runtime.finish()
                    break
                if select.select([sys.stdin], [], [], 0)[0]:
                    key = sys.stdin.read(1)
                    now = (sim.clock.monotonic_us() - sim.boot_us) / 1e6
                    if key == "q":
                        break
                    if key == "b":
                        sim.power.level = max(0.0, (sim.power.level or 100) - 10)
                    elif key == "f":
                        sim.disk.fill_to(int((sim.runtime.config.storage.warn_free_mb - 1) * (1 << 20)))
                    elif key == "k":
                        (sim.runtime.undock if sim.runtime.state.value == "DOCKED" else sim.runtime.dock)()
                    else:
                        action = {"p": ("press", {}), "d": ("double", {}), "h": ("hold", {"seconds": 3.5}),
                                  "l": ("hold", {"seconds": 5.5})}.get(key)
                        if action:
                            sim.schedule({"at": now, "action": action[0], **action[1]})
                sim.step()
                live.update(_panel(sim))
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sim.runtime.stop_recording("simulation_end")
