"""Process supervision for platform components.

A supervised process runs in its own session (so a Ctrl-C in the terminal
reaches the harness, which then stops the platform in order, rather than
every component at once), writes stdout and stderr to its own log file, and
is identified by pid *and* kernel start time so that a recycled pid is never
signalled by mistake. The same handle works from the process that started
the component and, through :meth:`Supervised.attach`, from a later one
(``stackproof down`` after ``stackproof up``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ComponentError

ReadyCheck = Callable[[], tuple[bool, str]]


def proc_start_time(pid: int) -> int | None:
    """Kernel start time (clock ticks since boot) of ``pid``, None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


@dataclass
class Supervised:
    name: str
    pid: int
    start_time: int
    log_path: Path
    stop_signal: int = signal.SIGTERM
    _popen: subprocess.Popen | None = None

    # -- starting --------------------------------------------------------
    @classmethod
    def start(cls, name: str, args: list[str], log_path: Path, cwd: Path | None = None,
              env: dict | None = None, stop_signal: int = signal.SIGTERM) -> "Supervised":
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(f"\n=== stackproof: starting {name} at {time.strftime('%Y-%m-%dT%H:%M:%S')}: "
                      f"{' '.join(args)}\n".encode())
            log.flush()
            try:
                popen = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise ComponentError(f"{name} could not be started: {exc.strerror}: {args[0]}") from None
        st = proc_start_time(popen.pid) or 0
        return cls(name, popen.pid, st, log_path, stop_signal, popen)

    @classmethod
    def attach(cls, name: str, pid: int, start_time: int, log_path: Path,
               stop_signal: int = signal.SIGTERM) -> "Supervised":
        return cls(name, pid, start_time, log_path, stop_signal)

    def to_dict(self) -> dict:
        return {"pid": self.pid, "start_time": self.start_time, "log": str(self.log_path),
                "stop_signal": int(self.stop_signal)}

    # -- state -----------------------------------------------------------
    def alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        st = proc_start_time(self.pid)
        return st is not None and (self.start_time == 0 or st == self.start_time)

    def exit_code(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def wait_ready(self, check: ReadyCheck, timeout: float, interval: float = 0.25) -> float:
        """Poll ``check`` until it says ready; returns seconds taken.

        Fails at once, with the log tail, when the process exits meanwhile."""
        t0 = time.monotonic()
        detail = "no answer yet"
        while True:
            if not self.alive():
                code = self.exit_code()
                raise ComponentError(
                    f"{self.name} exited during start-up" + (f" with code {code}" if code is not None else "")
                    + f"; log: {self.log_path}", self.tail())
            ok, detail = check()
            if ok:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise ComponentError(f"{self.name} was not ready after {timeout:.0f}s ({detail}); "
                                     f"log: {self.log_path}", self.tail())
            time.sleep(interval)

    # -- stopping --------------------------------------------------------
    def _signal(self, sig: int) -> None:
        if not self.alive():
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen is not None:
                try:
                    self._popen.wait(timeout=0.1)
                    return True
                except subprocess.TimeoutExpired:
                    continue
            if not self.alive():
                return True
            time.sleep(0.1)
        return not self.alive()

    def stop(self, timeout: float = 30.0) -> str:
        """Graceful stop; SIGKILL if it hangs. Returns 'stopped', 'killed' or 'not running'."""
        if not self.alive():
            return "not running"
        self._signal(self.stop_signal)
        if self._wait_gone(timeout):
            return "stopped"
        self.kill()
        return "killed"

    def kill(self) -> None:
        """SIGKILL, no flush: what a crash looks like to the component."""
        self._signal(signal.SIGKILL)
        self._wait_gone(10)
