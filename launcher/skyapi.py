"""The one module that imports SkyPilot. Everything gptoss-sky asks of SkyPilot goes through here.

`sky` is imported inside functions (it takes seconds and pulls in cloud SDKs), so commands that never
touch SkyPilot stay fast. SkyPilot exceptions are mapped to SkyError / NoCloudError at this seam, and
SDK request ids are resolved here, so callers get plain values. Offline-safe pieces (YAML validation,
catalog reads, the in-process optimizer) are plain functions; the calls that reach a cloud (launch,
status, down, serve) are methods of `SkyClient`, which tests replace with a recording fake.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, Mapping, Sequence

from launcher.errors import NoCloudError, RenderError, SkyError


@contextlib.contextmanager
def map_sky_exceptions(action: str) -> Iterator[None]:
    """Re-raise SkyPilot's exceptions as ours, with what we were doing."""
    try:
        yield
    except (SkyError, NoCloudError, RenderError):
        raise
    except Exception as exc:  # the SDK raises many unrelated types; this is the seam that maps them
        import sky.exceptions as sky_exc

        if isinstance(exc, sky_exc.NoCloudAccessError):
            raise NoCloudError(f"{action}: no cloud is enabled in SkyPilot; run `sky check`") from exc
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SkyError(f"{action}: {message}") from exc


def task_from_config(config: Mapping[str, Any], secrets: Mapping[str, str] | None = None,
                     envs: Mapping[str, str] | None = None) -> Any:
    """Parse a task/service config with SkyPilot's own schema and parser (offline)."""
    import sky

    try:
        task = sky.Task.from_yaml_config(
            copy.deepcopy(dict(config)),  # from_yaml_config mutates its argument
            env_overrides=list((envs or {}).items()) or None,
            secrets_overrides=list((secrets or {}).items()) or None,
        )
        if task.service is not None:
            sky.serve.validate_service_task(task, pool=False)
    except Exception as exc:  # schema and value errors come as several types
        raise RenderError(f"SkyPilot rejected the YAML for {config.get('name')!r}: {exc}") from exc
    return task
