"""Local state: one small JSON record per deployment, and its API key (0600), under GPTOSS_SKY_HOME
(default: click-style user config dir, ~/.config/gptoss-sky). Writes are atomic (temp file + rename)
and serialised with a lock file, so concurrent invocations never corrupt a record. Records are read
leniently: unknown fields are ignored, unreadable files are skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from launcher.errors import UnknownDeploymentError, UserError

NAME_PREFIX = "gptoss-"  # every cluster and service gptoss-sky launches starts with this


def home() -> Path:
    override = os.environ.get("GPTOSS_SKY_HOME")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "gptoss-sky"


@dataclass
class Record:
    name: str
    kind: str  # "cluster" or "service"
    model: str
    served_model: str
    key_path: str
    created: float
    gpus: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # the launched YAML, no secrets in it
    price_per_hour: float | None = None
    state: str = "launching"  # launching | up | failed
    secret_name: str = "VLLM_API_KEY"  # the SkyPilot secret that carries the key (per engine)
    port: int = 8000

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def validate_name(name: str) -> str:
    import re

    full = name if name.startswith(NAME_PREFIX) else NAME_PREFIX + name
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,50}[a-z0-9]", full):
        raise UserError(f"invalid name {name!r}: use lower-case letters, digits and '-' (at most 45), "
                        "not ending in '-'")
    return full


def _dir(kind: str) -> Path:
    path = home() / kind
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@contextlib.contextmanager
def locked() -> Iterator[None]:
    lock = home() / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def new_key(name: str) -> Path:
    """Generate a fresh API key for a deployment; stored 0600, returned as a path (never printed)."""
    path = _dir("keys") / f"{name}.key"
    _atomic_write(path, secrets.token_urlsafe(32) + "\n", 0o600)
    return path


def read_key(path: str | Path) -> str:
    return Path(path).read_text().strip()


def save(record: Record) -> None:
    with locked():
        _atomic_write(_dir("deployments") / f"{record.name}.json", json.dumps(asdict(record), indent=2))


def load(name: str) -> Record:
    path = _dir("deployments") / f"{name}.json"
    try:
        return Record.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise UnknownDeploymentError(f"no gptoss-sky deployment named {name!r} "
                                     "(see `gptoss-sky status`)") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"deployment record {path} is unreadable: {exc}") from exc


def all_records() -> list[Record]:
    out = []
    for path in sorted(_dir("deployments").glob("*.json")):
        try:
            out.append(Record.from_dict(json.loads(path.read_text())))
        except (ValueError, TypeError, OSError):
            continue  # a half-written or foreign file never breaks status
    return out


def exists(name: str) -> bool:
    return (_dir("deployments") / f"{name}.json").exists()


def remove(name: str) -> None:
    with locked():
        with contextlib.suppress(FileNotFoundError):
            record = load(name)
            Path(record.key_path).unlink(missing_ok=True)
        (_dir("deployments") / f"{name}.json").unlink(missing_ok=True)


def now() -> float:
    return time.time()
