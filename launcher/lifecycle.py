"""Deployment lifecycle: plan -> render -> launch -> wait -> smoke, and lookup of what was launched.

(Being written; the verify commands rely only on `connection_for`.)
"""

from __future__ import annotations

from dataclasses import dataclass

from launcher.errors import UnknownDeploymentError


@dataclass(frozen=True)
class Connection:
    """How to talk to one deployment's OpenAI-compatible endpoint."""

    base_url: str  # scheme://host:port, no trailing slash, no /v1
    api_key: str
    model: str  # served model name, e.g. "openai/gpt-oss-20b"
    price_per_hour: float | None  # $/hour of the whole deployment when known


def connection_for(name: str) -> Connection:
    """Endpoint, key, model and price of a deployment gptoss-sky launched."""
    raise UnknownDeploymentError(f"no gptoss-sky deployment named {name!r}")
