"""`doctor`: what would make a launch fail, found before paying for one.

Each check returns a Check (ok / warning / problem, what was found, and the fix). Checks never raise:
a check that cannot run is itself a warning. SkyPilot is asked through launcher.sky.skyapi only; printing
and the exit code are the CLI's. Imports no click/rich/sky.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from launcher.errors import GptossSkyError
from launcher.plan.catalog import Engine, load_images, load_price_snapshot
from launcher.sky import skyapi, state

OK, WARNING, PROBLEM = "ok", "warning", "problem"
CATALOG_STALE_DAYS = 30  # SkyPilot refreshes an online cache every few hours; a month old means it cannot


@dataclass(frozen=True)
class Check:
    name: str
    level: str  # ok | warning | problem
    detail: str
    fix: str | None = None
    remote: bool = False  # a problem of a server elsewhere (exit 1), not of this machine's setup (exit 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_api_server(info: Callable[[], dict[str, Any]] = skyapi.api_server_info) -> Check:
    """SkyPilot client version, where its API server is, whether it answers, and version skew."""
    try:
        found = info()
    except GptossSkyError as exc:
        return Check("skypilot api server", PROBLEM, f"could not ask it: {exc}",
                     "check the SkyPilot install: `sky api info`")
    where = "local" if found["local"] else "remote"
    client = found.get("client_version")
    status = found.get("status")
    if status == "healthy":
        server = found.get("server_version")
        if server and client and server != client:
            return Check("skypilot api server", WARNING,
                         f"{where} server {found['url']} runs SkyPilot {server}, this client {client}",
                         f"install skypilot=={server} here, or upgrade the server to {client}")
        return Check("skypilot api server", OK, f"SkyPilot {client}; {where} server {found['url']} answers")
    if status == "version_mismatch":
        return Check("skypilot api server", PROBLEM,
                     f"{where} server {found['url']} refuses client {client}: {found.get('error') or 'version skew'}",
                     "`sky api stop; sky api start`" if found["local"]
                     else "install the SkyPilot version the server names (`sky api info`)")
    if status == "needs_auth":
        return Check("skypilot api server", PROBLEM, f"{where} server {found['url']} needs a login",
                     f"`sky api login -e {found['url']}`")
    if found["local"]:
        if os.environ.get("SKYPILOT_DISABLE_LOCAL_API_SERVER"):
            return Check("skypilot api server", PROBLEM,
                         f"no local API server at {found['url']}, and SKYPILOT_DISABLE_LOCAL_API_SERVER stops "
                         "SkyPilot from starting one", "unset SKYPILOT_DISABLE_LOCAL_API_SERVER, or `sky api start`")
        return Check("skypilot api server", WARNING,
                     f"no local API server running at {found['url']} (SkyPilot {client} starts one on first use)",
                     "`sky api start` to start it now")
    return Check("skypilot api server", PROBLEM, f"remote API server {found['url']} does not answer",
                 "check the URL and network (`sky api info`), `sky api login -e URL`, or `sky api logout` "
                 "to use a local server", remote=True)


def check_infra(enabled: Callable[[], Sequence[str]]) -> Check:
    """Infra SkyPilot can launch on (asked of the API server)."""
    try:
        infra = list(enabled())
    except GptossSkyError as exc:
        return Check("enabled infra", WARNING, f"unknown: {exc}", "fix the API server first, then `sky check`")
    if not infra:
        return Check("enabled infra", PROBLEM, "SkyPilot has no enabled cloud or Kubernetes context",
                     "set up credentials for a cloud (or a kubeconfig), then `sky check`")
    return Check("enabled infra", OK, ", ".join(sorted(infra)))


def check_catalogs(clouds: Sequence[str] | None = None, snapshot: str | None = None,
                   path_of: Callable[[str], str] = skyapi.real_catalog_path, now: float | None = None) -> Check:
    """Age of SkyPilot's cached price catalogs of the snapshot's clouds, next to the snapshot's date
    (both from catalogs/prices/snapshot.yaml unless given)."""
    if clouds is None or snapshot is None:
        bundled = load_price_snapshot()
        clouds = bundled.clouds if clouds is None else clouds
        snapshot = bundled.date if snapshot is None else snapshot
    now = time.time() if now is None else now
    ages = {}
    for cloud in clouds:
        try:
            ages[cloud] = (now - os.path.getmtime(path_of(cloud))) / 86400
        except OSError:
            continue
    if not ages:
        return Check("price catalogs", WARNING,
                     f"SkyPilot has no cached catalog; `plan` prices from the bundled snapshot of {snapshot}",
                     "let SkyPilot fetch its catalogs: `sky check` or `sky show-gpus` with network")
    stale = sorted(c for c, days in ages.items() if days > CATALOG_STALE_DAYS)
    listing = ", ".join(f"{c} {days:.0f} d" for c, days in sorted(ages.items()))
    if stale:
        return Check("price catalogs", WARNING,
                     f"SkyPilot's catalogs for {', '.join(stale)} are over {CATALOG_STALE_DAYS} days old "
                     f"({listing}); the bundled snapshot is of {snapshot}",
                     "delete the stale vms.csv files under ~/.sky/catalogs/v8/ (SkyPilot fetches fresh ones on "
                     "next use), or check network access to SkyPilot's catalog")
    return Check("price catalogs", OK, f"SkyPilot's cached catalogs: {listing}; bundled snapshot {snapshot}")


def check_state_dir(home: Path | None = None) -> list[Check]:
    """The state directory can be written, and every key file is private (0600)."""
    home = home or state.home()
    checks = []
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, probe = tempfile.mkstemp(dir=home, prefix=".doctor-")
        os.close(fd)
        os.unlink(probe)
        checks.append(Check("state directory", OK, f"{home} is writable"))
    except OSError as exc:
        checks.append(Check("state directory", PROBLEM, f"{home} is not writable: {exc.strerror or exc}",
                            f"make it writable (`chmod u+rwx {home}`) or point GPTOSS_SKY_HOME at a writable "
                            "directory"))
        return checks
    loose = []
    for key in sorted((home / "keys").glob("*.key")):
        try:
            mode = stat.S_IMODE(key.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            loose.append((key, mode))
    if loose:
        names = ", ".join(f"{k} ({m:04o})" for k, m in loose)
        checks.append(Check("key files", PROBLEM, f"readable by others: {names}",
                            "chmod 600 " + " ".join(str(k) for k, _ in loose)))
    else:
        checks.append(Check("key files", OK, "every API key file is 0600"))
    return checks


def check_engine_images(engine: Engine, enabled: Sequence[str] | None,
                        images: Sequence[dict[str, Any]] | None = None) -> Check:
    """The pinned engine's CUDA/driver needs, and which SkyPilot images meet them."""
    need = engine.node_requirements
    name = f"{engine.engine} {engine.version}"
    if not need.get("cuda"):
        return Check("engine driver needs", WARNING, f"{name}: CUDA/driver needs not recorded",
                     f"check {engine.engine}'s release notes before launching")
    images = load_images() if images is None else images
    wanted = _version(str(need["cuda"]))
    meets = [i for i in images if _version(str(i["cuda"])) >= wanted]
    short = [i for i in images if _version(str(i["cuda"])) < wanted and i.get("default")]
    head = f"{name} needs CUDA {need['cuda']} (NVIDIA driver >= {need.get('min_driver', '?')}; {need.get('why', '')})"
    good = ", ".join(f"{i['cloud']} {i['image']}" for i in meets if i.get("default")) or "none recorded"
    detail = f"{head}; default images that meet it: {good}"
    if short:
        detail += "; that do not: " + ", ".join(f"{i['cloud']} {i['image']} (CUDA {i['cuda']})" for i in short)
    relevant = [i for i in short if enabled is None or i["cloud"] in enabled]
    if relevant and enabled is not None:
        clouds = ", ".join(sorted({i["cloud"] for i in relevant}))
        return Check("engine driver needs", WARNING, detail,
                     f"avoid {clouds} for this engine (--infra on a cloud whose image meets it), or pin an engine "
                     "built for the older CUDA with --engine-version")
    return Check("engine driver needs", OK, detail)


HOST_TOOLS = {"rsync": "every launch (SkyPilot syncs the task to the node)",
              "socat": "Kubernetes (SkyPilot's port-forward to the pods)",
              "nc": "Kubernetes (SkyPilot's SSH proxy to the pods; the netcat package)"}
_PACKAGE = {"rsync": "rsync", "socat": "socat", "nc": "netcat-openbsd"}


def check_host_tools(local: bool | None, enabled: Sequence[str] | None,
                     which: Callable[[str], str | None] | None = None) -> Check:
    """What SkyPilot runs on the API server's host: rsync for any launch, socat and netcat for
    Kubernetes. Checkable only when that host is this machine (a local API server)."""
    import shutil

    which = which or shutil.which
    if not local:
        where = "runs elsewhere" if local is False else "could not be asked where it runs"
        return Check("api server host tools", OK, f"not checked: the API server {where}; its host needs rsync "
                     "(and socat, netcat for Kubernetes)")
    kubernetes = any(str(i).split("/")[0] == "kubernetes" for i in enabled or [])
    needed = ["rsync"] + (["socat", "nc"] if kubernetes else [])
    missing = [tool for tool in needed if not which(tool)]
    if missing:
        why = "; ".join(f"{tool}: needed for {HOST_TOOLS[tool]}" for tool in missing)
        return Check("api server host tools", PROBLEM, f"missing on this machine (the API server's host): {why}",
                     f"sudo apt install {' '.join(_PACKAGE[t] for t in missing)} (or your system's packages)")
    return Check("api server host tools", OK, f"{', '.join(needed)} found")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def run(engine: Engine, enabled_infra: Callable[[], Sequence[str]],
        api_server: Callable[[], dict[str, Any]] = skyapi.api_server_info) -> list[Check]:
    """Every check, in the order a launch meets them."""
    checks = [check_api_server(api_server)]
    if checks[0].level == OK:
        infra_check = check_infra(enabled_infra)
    else:  # asking would start (or hang on) the server the first check found missing
        infra_check = Check("enabled infra", WARNING, "not asked: the API server does not answer",
                            "fix the API server first, then `sky check`")
    checks.append(infra_check)
    checks.append(check_catalogs())
    checks.extend(check_state_dir())
    enabled = infra_check.detail.split(", ") if infra_check.level == OK else None
    try:
        local: bool | None = bool(api_server().get("local"))
    except GptossSkyError:
        local = None
    checks.append(check_host_tools(local, enabled))
    checks.append(check_engine_images(engine, enabled))
    return checks
