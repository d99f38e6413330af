"""fwatchdog: an of-watchdog compatible watchdog with a warm in-process Python runtime.

It ships alone inside function images: it imports no other project package.
"""

__version__ = "0.1.0"
