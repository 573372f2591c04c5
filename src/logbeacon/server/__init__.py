"""The logbeacon server: `create_app(Settings(...))` builds the FastAPI app `logbeacon serve` runs.

Imports are lazy so that `logbeacon.server.signing` (used by the SDK to sign requests) can be
imported without pulling in FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from logbeacon.server.app import create_app
    from logbeacon.server.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from logbeacon.server.app import create_app

        return create_app
    if name == "Settings":
        from logbeacon.server.settings import Settings

        return Settings
    raise AttributeError(f"module 'logbeacon.server' has no attribute {name!r}")
