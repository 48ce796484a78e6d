"""The exception tree. Library modules raise these; only `launcher.cli` turns them into exit codes.

* GptossSkyError             root; anything else escaping is a bug and shows a traceback
  + UserError                the user must change something (exit 2)
    - CatalogError           a catalogs/*.yaml file is malformed or names something unknown
    - RenderError            a template could not be rendered into valid SkyPilot YAML
    - NoFitError             no GPU choice fits the requested model and context
    - NoCloudError           no cloud is enabled in SkyPilot (run `sky check`)
    - UnknownDeploymentError a NAME that gptoss-sky did not launch
  + SkyError                 SkyPilot failed while launching, querying or tearing down (exit 1)
    - NotFoundError          SkyPilot has no cluster/service of that name (already gone)
    - LaunchFailedError      the node's setup or engine failed during a launch (carries the log tail)
    - RequestStalledError    SkyPilot's request entered its retry loop (e.g. a controller it cannot place)
    - ApiServerUnreachableError  no SkyPilot API server answers (not running and auto-start disabled, down,
                             or needs `sky api login`)
  + EndpointError            an endpoint could not be reached or answered wrongly (exit 1)
  + StateError               gptoss-sky's own state folder cannot be read or written, or a record or key
                             file in it is damaged (exit 2: the local setup)
  + InterruptedLaunch        Ctrl-C during a launch, after the SkyPilot request was cancelled or left
                             running as the user chose (exit 130)
"""


class GptossSkyError(Exception):
    """Root of every error gptoss-sky raises on purpose."""

    exit_code = 1


class UserError(GptossSkyError):
    """The user has to change an argument, a file or their setup."""

    exit_code = 2


class CatalogError(UserError):
    """A catalog file is malformed, or a model/GPU name is not in it."""


class RenderError(UserError):
    """A template could not be rendered, or its output is not valid SkyPilot YAML."""


class NoFitError(UserError):
    """No GPU choice fits the model at the requested context."""


class NoCloudError(UserError):
    """SkyPilot has no enabled cloud, so nothing can be launched or priced live."""


class UnknownDeploymentError(UserError):
    """A deployment name that gptoss-sky has no record of and SkyPilot does not know."""


class SkyError(GptossSkyError):
    """SkyPilot raised while launching, querying or tearing down."""


class NotFoundError(SkyError):
    """SkyPilot has no cluster or service of that name: it never existed or is already torn down."""


class ApiServerUnreachableError(SkyError):
    """No SkyPilot API server answered (or it wants a login): nothing about clouds or deployments is known."""


class LaunchFailedError(SkyError):
    """A launch failed on the node (setup, job or engine exit); the message carries the cause and log tail.

    `cause`, `log_tail` (the last log lines) and `phases` (how far it got) are kept for --json."""

    def __init__(self, message: str, *, cause: str | None = None, log_tail: list[str] | None = None,
                 phases: list[dict] | None = None) -> None:
        super().__init__(message)
        self.cause = cause or message
        self.log_tail = list(log_tail or [])
        self.phases = list(phases or [])


class RequestStalledError(SkyError):
    """SkyPilot's request stopped making progress (its retry loop); the request may still be running.

    `request_id` and `cause` (the line SkyPilot logged as the reason) are kept for the caller."""

    def __init__(self, message: str, *, request_id: str | None = None, cause: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.cause = cause or message


class EndpointError(GptossSkyError):
    """An endpoint could not be reached or did not behave like an OpenAI server."""


class StateError(GptossSkyError):
    """The local state (records, keys, lock) cannot be read or written, or a file in it is damaged."""

    exit_code = 2


class InterruptedLaunch(GptossSkyError):
    """The user pressed Ctrl-C during a launch; the message says what happened to SkyPilot's request."""

    exit_code = 130
