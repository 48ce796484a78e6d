"""Local state: one small JSON record per deployment, and its API key (0600), under GPTOSS_SKY_HOME
(default: click-style user config dir, ~/.config/gptoss-sky).

Rules this module keeps (issue 11):
* Writes are atomic (temp file + rename) and serialised with a lock file; a new deployment *claims* its
  record with an exclusive create, so two `up` of one name cannot both launch.
* Records and keys are deleted only by `remove` (called by a confirmed `down` or by `forget`), and only
  the deployment's own files: keys/NAME.key, never whatever path a (possibly corrupt) record names.
* Every file-system fault surfaces as StateError (one line, exit 1), never as a traceback; a record
  that is not a well-typed JSON object is "corrupt", and reads report it instead of crashing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from launcher.errors import StateError, UnknownDeploymentError, UserError

NAME_PREFIX = "gptoss-"  # every cluster and service gptoss-sky launches starts with this
_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,50}[a-z0-9]")


def home() -> Path:
    override = os.environ.get("GPTOSS_SKY_HOME")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "gptoss-sky"


def _fault(action: str, path: Path | str, exc: BaseException) -> StateError:
    """One line naming the file, what failed and where state lives."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return StateError(f"cannot {action} {path}: {reason} (gptoss-sky keeps its state under {home()}; "
                      "set GPTOSS_SKY_HOME to a writable folder)")


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
    state: str = "launching"  # launching | up | failed | interrupted
    secret_name: str = "VLLM_API_KEY"  # the SkyPilot secret that carries the key (per engine)
    port: int = 8000
    # False until SkyPilot is asked to launch: a record that never got that far has nothing to tear down.
    # Records written before this field existed default to True (something may exist).
    sky_called: bool = True
    phases: list[dict[str, Any]] = field(default_factory=list)  # the launch's timeline (launcher.phases)
    user_envs: dict[str, str] = field(default_factory=dict)  # --env values (not secret), resent by `scale`
    user_secrets: list[str] = field(default_factory=list)  # --secret NAMES only; `scale` rereads the values
    # SkyPilot's id of the launch / serve.up request, saved before any waiting: the request runs on the
    # API server whatever happens to this process, so `status` asks about it and `down` cancels it first.
    request_id: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Record:
        """A record from parsed JSON; ValueError naming the field when it is not what we write."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, found {type(data).__name__}")
        values = {}
        for f in fields(cls):
            if f.name not in data:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise ValueError(f"field {f.name!r} is missing")
                continue
            value = data[f.name]
            if not _FIELD_CHECKS[f.name](value):
                raise ValueError(f"field {f.name!r} has a wrong value {value!r:.60}")
            values[f.name] = value
        record = cls(**values)
        if record.kind not in ("cluster", "service"):
            raise ValueError(f"field 'kind' is {record.kind!r}, not 'cluster' or 'service'")
        return record


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


_FIELD_CHECKS = {
    "name": lambda v: isinstance(v, str) and bool(_NAME_RE.fullmatch(v)),
    "kind": lambda v: isinstance(v, str),
    "model": lambda v: isinstance(v, str),
    "served_model": lambda v: isinstance(v, str),
    "key_path": lambda v: isinstance(v, str),
    "created": _number,
    "gpus": lambda v: isinstance(v, list) and all(isinstance(g, str) for g in v),
    "config": lambda v: isinstance(v, dict),
    "price_per_hour": lambda v: v is None or (_number(v) and v >= 0),
    "state": lambda v: isinstance(v, str),
    "secret_name": lambda v: isinstance(v, str) and bool(v),
    "port": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536,
    "sky_called": lambda v: isinstance(v, bool),
    "phases": lambda v: isinstance(v, list) and all(isinstance(p, dict) for p in v),
    "user_envs": lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
    "user_secrets": lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
    "request_id": lambda v: v is None or (isinstance(v, str) and bool(re.fullmatch(r"[A-Za-z0-9-]{1,80}", v))),
}


def validate_name(name: str) -> str:
    full = name if name.startswith(NAME_PREFIX) else NAME_PREFIX + name
    if not _NAME_RE.fullmatch(full):
        raise UserError(f"invalid name {name!r}: use lower-case letters, digits and '-' (at most 45), "
                        "not ending in '-'")
    return full


def _path(kind: str) -> Path:
    return home() / kind


def _dir(kind: str) -> Path:
    """The folder, created (0700) when missing; StateError when it cannot be."""
    path = _path(kind)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise _fault("create the folder", path, exc) from None
    if not path.is_dir():
        raise _fault("use the folder", path, NotADirectoryError(errno.ENOTDIR, "not a folder"))
    return path


def record_path(name: str) -> Path:
    return _path("deployments") / f"{name}.json"


def key_path(name: str) -> Path:
    """The only key file a deployment owns (and the only one `remove` deletes)."""
    return _path("keys") / f"{name}.key"


@contextlib.contextmanager
def locked() -> Iterator[None]:
    lock = home() / ".lock"
    try:
        lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        f = open(lock, "a")
    except OSError as exc:
        raise _fault("open the lock file", lock, exc) from None
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _temp(path: Path, text: str, mode: int) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _atomic_write(path: Path, text: str, mode: int = 0o600, *, exclusive: bool = False) -> None:
    """Write via a temp file; `exclusive` links it into place only if `path` does not exist yet."""
    try:
        tmp = _temp(path, text, mode)
    except OSError as exc:
        raise _fault("write", path, exc) from None
    try:
        if exclusive:
            os.link(tmp, path)  # atomic and exclusive: FileExistsError when someone else has it
        else:
            os.replace(tmp, path)
    except OSError as exc:
        if exclusive and isinstance(exc, FileExistsError):
            raise
        raise _fault("write", path, exc) from None
    finally:
        with contextlib.suppress(OSError):
            if exclusive or os.path.lexists(tmp):
                os.unlink(tmp)


def write_file(kind: str, filename: str, text: str) -> Path:
    """home()/KIND/FILENAME written atomically, 0600 (the folder created 0700): for files other than records
    and keys that gptoss-sky keeps, e.g. the tuned profiles under profiles/."""
    path = _dir(kind) / filename
    with locked():
        _atomic_write(path, text)
    return path


def new_key(name: str) -> Path:
    """Generate a fresh API key for a deployment; stored 0600, returned as a path (never printed).
    Never replaces a key file already there (it may be the only key of something still running)."""
    _dir("keys")
    path = key_path(name)
    try:
        _atomic_write(path, secrets.token_urlsafe(32) + "\n", 0o600, exclusive=True)
    except FileExistsError:
        raise UserError(orphan_key_message(name)) from None
    return path


def orphan_key_message(name: str) -> str:
    return (f"an API key for {name} already exists ({key_path(name)}) without a record; a deployment "
            f"launched earlier may still use it: `gptoss-sky forget {name}` deletes it, or pick another --name")


def has_key(name: str) -> bool:
    try:
        return os.path.lexists(key_path(name))
    except OSError:
        return False


def read_key(path: str | Path, name: str | None = None) -> str:
    """The key in `path`; StateError (exit 1) saying what to do when it is missing or unreadable."""
    path = Path(path)
    who = f"the API key of {name}" if name else "the API key"
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        raise StateError(f"{who} is missing ({path}): pass --api-key, or `gptoss-sky down {name or 'NAME'}` "
                         "and launch again (a new launch makes a new key)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fault("read " + who + " from", path, exc) from None
    if not key or any(c.isspace() or not c.isprintable() for c in key):
        raise StateError(f"{who} in {path} is empty or not a key: pass --api-key, or `gptoss-sky down "
                         f"{name or 'NAME'}` and launch again")
    return key


def read_record_key(record: Record) -> str:
    return read_key(record.key_path, record.name)


def save(record: Record) -> None:
    with locked():
        _dir("deployments")
        _atomic_write(record_path(record.name), json.dumps(asdict(record), indent=2))


def claim(record: Record) -> None:
    """Create the record of a new deployment, exclusively: a second `up` of the same name fails here."""
    with locked():
        _dir("deployments")
        try:
            _atomic_write(record_path(record.name), json.dumps(asdict(record), indent=2), exclusive=True)
        except FileExistsError:
            raise UserError(f"a deployment named {record.name} already exists; pick another --name or "
                            f"`gptoss-sky down {record.name}` first") from None


class CorruptRecord(ValueError):
    """A record file that exists but is not a record we wrote (damaged, truncated, foreign)."""

    def __init__(self, name: str, path: Path, reason: str):
        super().__init__(f"the record of {name} ({path}) is unreadable: {reason}; "
                         f"`gptoss-sky down {name}` or `gptoss-sky forget {name}` removes it")
        self.name, self.path, self.reason = name, path, reason


def _read(name: str, path: Path) -> Record:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise CorruptRecord(name, path, "it is a folder, not a file") from None
    except FileNotFoundError:
        raise
    except PermissionError as exc:
        raise CorruptRecord(name, path, f"it cannot be read ({exc.strerror or 'permission denied'})") from None
    except OSError as exc:
        raise _fault("read", path, exc) from None
    try:
        record = Record.from_dict(json.loads(raw.decode("utf-8")))
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise CorruptRecord(name, path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if record.name != name:
        raise CorruptRecord(name, path, f"it names {record.name!r}")
    return record


def load(name: str) -> Record:
    """The record of `name`: UnknownDeploymentError (exit 2) if none, StateError (exit 1) if corrupt."""
    path = record_path(name)
    try:
        return _read(name, path)
    except FileNotFoundError:
        raise UnknownDeploymentError(f"no gptoss-sky deployment named {name!r} "
                                     "(see `gptoss-sky status`)") from None
    except CorruptRecord as exc:
        raise StateError(str(exc)) from None


def scan() -> tuple[list[Record], list[CorruptRecord]]:
    """Every record, and every record file that could not be read (reported, never skipped silently)."""
    folder = _path("deployments")
    try:
        if home().exists() and not home().is_dir():
            raise _fault("use the folder", home(), NotADirectoryError(errno.ENOTDIR, "not a folder"))
        if not folder.exists():
            return [], []
        if not folder.is_dir():
            raise _fault("use the folder", folder, NotADirectoryError(errno.ENOTDIR, "not a folder"))
        paths = sorted(folder.glob("*.json"))
    except OSError as exc:
        raise _fault("list", folder, exc) from None
    good, bad = [], []
    for path in paths:
        name = path.name[:-len(".json")]
        if not _NAME_RE.fullmatch(name):
            continue  # not a name gptoss-sky writes (e.g. an editor's backup): not ours
        try:
            good.append(_read(name, path))
        except FileNotFoundError:
            continue  # removed meanwhile
        except CorruptRecord as exc:
            bad.append(exc)
    return good, bad


def all_records() -> list[Record]:
    return scan()[0]


def exists(name: str) -> bool:
    try:
        return os.path.lexists(record_path(name))
    except OSError:
        return False


def unclaim(name: str) -> None:
    """Drop a just-claimed record when the launch stops before its key exists (the key stays untouched)."""
    with locked():
        try:
            record_path(name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _fault("remove", record_path(name), exc) from None


def remove(name: str) -> list[str]:
    """Delete the record and key of `name` (only `down` and `forget` call this); return what was removed."""
    removed = []
    with locked():
        for path in (key_path(name), record_path(name)):
            try:
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()  # a folder where the file should be: cleared only when empty
                else:
                    path.unlink()
                removed.append(str(path))
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOTEMPTY:
                    raise StateError(f"cannot clear {path}: it is a folder with files in it, not a file "
                                     "gptoss-sky wrote; move it away and run the command again") from None
                raise _fault("remove", path, exc) from None
    return removed


def now() -> float:
    return time.time()
