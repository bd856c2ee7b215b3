"""Shared by the bench scripts: describe the machine, record a section of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path

from micoc.targets.host import cpu_model  # bench scripts import it from here

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "BENCHMARKS.md"


def machine() -> str:
    """One line: CPU, cores, Python/numpy, the load at the time, and the date."""
    import numpy as np

    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, numpy {np.__version__}{load}; {now}")


def write_section(section: str, path: Path = BENCHMARKS) -> None:
    """Add or replace the section whose `## Title` is the first line of `section`;
    every other section stays as it is on disk now."""
    title = section.splitlines()[0]
    if not title.startswith("## "):
        raise ValueError("a section starts with its '## Title' line")
    old = path.read_text(encoding="utf-8") if path.exists() else "# micoc benchmarks\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = section.rstrip("\n") + "\n"
    if pattern.search(old):
        new = pattern.sub(lambda _: text + "\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new.rstrip("\n") + "\n", encoding="utf-8")
