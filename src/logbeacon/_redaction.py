"""`Redaction`, the user's redaction settings, in a module of its own.

`logbeacon.redact` may be compiled with mypyc (`logbeacon/_compiled.py`), which enforces
declared types at every call; this class validates what a user passes (a list for a tuple,
a number for a key name) and must answer with a `ConfigError` that says what was wrong, so
it stays plain Python. `logbeacon.redact` and `logbeacon` re-export it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from logbeacon.exceptions import ConfigError

__all__ = ["Redaction"]


@dataclass(frozen=True, slots=True)
class Redaction:
    """What to scrub beyond the defaults (``logbeacon.configure(redaction=Redaction(...))``).

    The defaults cannot be switched off — only narrowed key by key with ``allow_keys`` — so
    a configuration mistake never turns redaction off.
    """

    extra_keys: tuple[str, ...] = ()
    extra_patterns: tuple[str | re.Pattern[str], ...] = ()
    allow_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("extra_keys", "extra_patterns", "allow_keys"):
            value = getattr(self, name)
            if isinstance(value, str | re.Pattern):
                value = (value,)
            try:
                object.__setattr__(self, name, tuple(value))
            except TypeError:
                raise ConfigError(
                    f"Redaction.{name} must be a list or tuple, got {type(value).__name__}"
                ) from None
        for key in (*self.extra_keys, *self.allow_keys):
            if not isinstance(key, str) or not key.strip():
                raise ConfigError(f"Redaction key names must be non-empty strings, got {key!r}")
        for pattern in self.extra_patterns:
            if not isinstance(pattern, str | re.Pattern):
                raise ConfigError(
                    "Redaction.extra_patterns takes regex strings or compiled re.Pattern "
                    f"objects, got {type(pattern).__name__}"
                )
