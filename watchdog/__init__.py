"""fwatchdog: an of-watchdog compatible watchdog with a warm in-process Python runtime.

It ships inside function images with servicekit beside it, and imports no other project package.
"""
