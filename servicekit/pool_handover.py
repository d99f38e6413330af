"""How the provider hands a function to a pooled runtime container's watchdog (names both sides share).

The container is started with ``ENV_LOAD`` set to ``CONTROL_MOUNT/LOAD_FILE``; ``CONTROL_MOUNT`` is a read-only
bind of a directory only the provider writes. The provider writes ``LOAD_FILE`` (``{"env": {...}}``) and then
writes a byte to the FIFO ``FIFO_NAME`` beside it. See ``provider/pool.py`` and ``watchdog/pool.py``.
"""

from typing import Final

ENV_LOAD: Final = "pyfaasd_pool_load"
CONTROL_MOUNT: Final = "/run/pyfaasd"
LOAD_FILE: Final = "load.json"
FIFO_NAME: Final = "wake"
