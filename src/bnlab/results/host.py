"""The machine a report was written on, in one line: studies' times only mean something beside it."""

import os
import platform


def machine():
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores "
            f"(load average {load} when the report was written: a shared, busy machine)")
