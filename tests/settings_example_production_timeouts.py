"""
The example's production settings with the Redis socket timeouts that
REDIS_SOCKET_TIMEOUT gives, in seconds ("none": no timeouts at all).
"""

import os

from tests.settings_example_production import *  # noqa: F403

_TIMEOUT = os.environ.get("REDIS_SOCKET_TIMEOUT", "none")
if _TIMEOUT == "none":
    CACHES["default"].pop("OPTIONS", None)  # noqa: F405
else:
    CACHES["default"]["OPTIONS"] = {  # noqa: F405
        "SOCKET_CONNECT_TIMEOUT": float(_TIMEOUT),
        "SOCKET_TIMEOUT": float(_TIMEOUT),
    }
