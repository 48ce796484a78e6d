"""No key or secret in any output: every command's stdout and stderr pass through one mask.

Whatever a command prints — its own lines, what an endpoint answered, SkyPilot's messages and log lines —
goes through `sys.stdout`/`sys.stderr`, which `masking()` wraps for the length of a command. The mask
holds every deployment key in the state folder (read again when a key file is added there), the
`--api-key` a command was given, and `--secret` values: each is replaced by `***`.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

MASK = "***"
_MIN_LENGTH = 6  # shorter strings would mask ordinary words; no key gptoss-sky makes or accepts is that short

_extra: set[str] = set()


def add(secret: str | None) -> None:
    """Mask this value in everything printed from now on (a key given on the command line, a secret)."""
    if secret and len(secret.strip()) >= _MIN_LENGTH:
        _extra.add(secret.strip())


class _Keys:
    """The keys in the state folder, re-read whenever the folder changes (a launch adds its key)."""

    def __init__(self) -> None:
        self._stamp: tuple[Path, int] | None = None
        self.values: frozenset[str] = frozenset()

    def current(self) -> frozenset[str]:
        from launcher.errors import GptossSkyError
        from launcher.sky import state

        try:
            folder = state.home() / "keys"
            stamp = (folder, folder.stat().st_mtime_ns)
        except (OSError, GptossSkyError):  # no folder yet, or a state home that cannot be read: nothing new
            return self.values
        if stamp != self._stamp:
            found = set()
            for path in folder.glob("*.key"):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    key = path.read_text().strip()
                    if len(key) >= _MIN_LENGTH:
                        found.add(key)
            self.values, self._stamp = frozenset(found), stamp
        return self.values


_keys = _Keys()


def _secrets() -> list[str]:
    return sorted(_extra | _keys.current(), key=len, reverse=True)


def redact(text: str) -> str:
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _unfinished(text: str, secrets: list[str]) -> int:
    """Where the longest tail of `text` that begins some secret starts (len(text) when none does): a
    secret whose first characters end this write may be finished by the next one."""
    longest = max((len(s) for s in secrets), default=0)
    for start in range(max(0, len(text) - longest + 1), len(text)):
        tail = text[start:]
        if any(s.startswith(tail) for s in secrets):
            return start
    return len(text)


class MaskedStream(io.TextIOBase):
    """A text stream that masks secrets in what is written and passes everything else to the stream below.

    A secret can arrive in pieces (a log line written in two calls, a model's answer streamed token by
    token, each flushed): the tail of a write that could begin a secret is held back until the next write
    shows whether it does, and a flush keeps it too (flushing it would print the first half of a key).
    Only such a tail is held, so text that cannot begin a secret is never delayed; `close` (the end of
    the command) writes whatever is held."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._held = ""

    def write(self, text: str) -> int:
        secrets = _secrets()
        masked = self._held + text
        for secret in secrets:
            if secret in masked:
                masked = masked.replace(secret, MASK)
        cut = _unfinished(masked, secrets)
        self._held = masked[cut:]
        if cut:
            self._stream.write(masked[:cut])
        return len(text)

    def close(self) -> None:
        """Write what is held (it turned out not to be a secret) and flush; the stream below stays open."""
        held, self._held = self._held, ""
        if held:
            self._stream.write(held)
        self._stream.flush()

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._stream, "errors", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def masking() -> Iterator[None]:
    """sys.stdout and sys.stderr masked until the block ends (the command's whole run)."""
    if os.environ.get("GPTOSS_SKY_API_KEY"):
        add(os.environ["GPTOSS_SKY_API_KEY"])
    saved = sys.stdout, sys.stderr
    masked = MaskedStream(saved[0]), MaskedStream(saved[1])
    sys.stdout, sys.stderr = masked
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        for stream in masked:
            with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe below: nothing to save
                stream.close()
