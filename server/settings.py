"""Settings, read once from the environment and validated.

Every limit the server applies is a field here, with its environment variable named in `ENV_NAMES`.
A bad value is a `SettingsError` that names the variable, raised at start-up.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

Provider = Literal["uniapi", "fal"]
# How the key is presented, `Authorization: <scheme> <key>`: per route family (see the `*_auth` settings).
AuthScheme = Literal["Key", "Bearer"]

FAL_PLATFORM_URL = "https://api.fal.ai/v1"  # fal's platform API: prices, account credits
PROVIDER_BASE_URLS: dict[Provider, str] = {
    "uniapi": "https://api.uniapi.io",
    "fal": "https://queue.fal.run",
}

# Field name -> environment variable. One place, so errors and the README name the same variable.
ENV_NAMES: dict[str, str] = {
    "provider": "FAL_MCP_PROVIDER",
    "base_url": "FAL_MCP_BASE_URL",
    "uniapi_key": "UNIAPI_KEY",
    "fal_key": "FAL_KEY",
    "fal_key_id": "FAL_KEY_ID",
    "fal_key_secret": "FAL_KEY_SECRET",
    "state_dir": "FAL_MCP_STATE_DIR",
    "submit_timeout": "FAL_MCP_SUBMIT_TIMEOUT",
    "request_timeout": "FAL_MCP_REQUEST_TIMEOUT",
    "connect_timeout": "FAL_MCP_CONNECT_TIMEOUT",
    "retry_deadline": "FAL_MCP_RETRY_DEADLINE",
    "max_connections": "FAL_MCP_MAX_CONNECTIONS",
    "max_log_lines": "FAL_MCP_MAX_LOG_LINES",
    "max_response_bytes": "FAL_MCP_MAX_RESPONSE_BYTES",
    "max_stream_event_bytes": "FAL_MCP_MAX_STREAM_EVENT_BYTES",
    "max_stream_bytes": "FAL_MCP_MAX_STREAM_BYTES",
    "log_level": "FAL_MCP_LOG_LEVEL",
    "max_wait_seconds": "FAL_MCP_MAX_WAIT_SECONDS",
    "poll_first_interval": "FAL_MCP_POLL_FIRST_INTERVAL",
    "poll_max_interval": "FAL_MCP_POLL_MAX_INTERVAL",
    "progress_interval": "FAL_MCP_PROGRESS_INTERVAL",
    "max_streams": "FAL_MCP_MAX_STREAMS",
    "use_status_stream": "FAL_MCP_USE_STATUS_STREAM",
    "file_roots": "FAL_MCP_FILE_ROOTS",
    "max_upload_bytes": "FAL_MCP_MAX_UPLOAD_BYTES",
    "storage_token_base": "FAL_MCP_STORAGE_TOKEN_BASE",
    "storage_upload_base": "FAL_MCP_STORAGE_UPLOAD_BASE",
    "watch_jobs": "FAL_MCP_WATCH_JOBS",
    "watch_first_interval": "FAL_MCP_WATCH_FIRST_INTERVAL",
    "watch_max_interval": "FAL_MCP_WATCH_MAX_INTERVAL",
    "watch_max_jobs": "FAL_MCP_WATCH_MAX_JOBS",
    "watch_max_age": "FAL_MCP_WATCH_MAX_AGE",
    "max_stored_result_bytes": "FAL_MCP_MAX_STORED_RESULT_BYTES",
    "download_dir": "FAL_MCP_DOWNLOAD_DIR",
    "max_download_bytes": "FAL_MCP_MAX_DOWNLOAD_BYTES",
    "download_timeout": "FAL_MCP_DOWNLOAD_TIMEOUT",
    "max_download_files": "FAL_MCP_MAX_DOWNLOAD_FILES",
    "max_input_bytes": "FAL_MCP_MAX_INPUT_BYTES",
    "max_prompt_chars": "FAL_MCP_MAX_PROMPT_CHARS",
    "http_token": "FAL_MCP_HTTP_TOKEN",
    "http_allowed_hosts": "FAL_MCP_HTTP_ALLOWED_HOSTS",
    "http_max_connections": "FAL_MCP_HTTP_MAX_CONNECTIONS",
    "http_max_pending": "FAL_MCP_HTTP_MAX_PENDING",
    "http_request_timeout": "FAL_MCP_HTTP_REQUEST_TIMEOUT",
    "http_max_request_bytes": "FAL_MCP_HTTP_MAX_REQUEST_BYTES",
    "max_completion_scan": "FAL_MCP_MAX_COMPLETION_SCAN",
    "max_subscriptions": "FAL_MCP_MAX_SUBSCRIPTIONS",
    "max_subscription_bytes": "FAL_MCP_MAX_SUBSCRIPTION_BYTES",
    "http_max_sessions": "FAL_MCP_HTTP_MAX_SESSIONS",
    "http_session_idle_timeout": "FAL_MCP_HTTP_SESSION_IDLE_TIMEOUT",
    "http_stateless": "FAL_MCP_HTTP_STATELESS",
    "database_url": "FAL_MCP_DATABASE_URL",
    "database_pool_size": "FAL_MCP_DATABASE_POOL_SIZE",
    "watch_lease": "FAL_MCP_WATCH_LEASE",
    "task_input_seconds": "FAL_MCP_TASK_INPUT_SECONDS",
    "max_input_tasks": "FAL_MCP_MAX_INPUT_TASKS",
    "fal_auth": "FAL_MCP_FAL_AUTH",
    "kling_auth": "FAL_MCP_KLING_AUTH",
    "luma_auth": "FAL_MCP_LUMA_AUTH",
    "prices_file": "FAL_MCP_PRICES",
    "platform_url": "FAL_MCP_PLATFORM_URL",
    "price_cache_seconds": "FAL_MCP_PRICE_CACHE_SECONDS",
    "pricing_timeout": "FAL_MCP_PRICING_TIMEOUT",
    "max_job_cost": "FAL_MCP_MAX_JOB_COST",
    "daily_budget": "FAL_MCP_DAILY_BUDGET",
    "confirm_above": "FAL_MCP_CONFIRM_ABOVE",
    "allow_unpriced": "FAL_MCP_ALLOW_UNPRICED",
    "time_zone": "FAL_MCP_TIME_ZONE",
}


# Never quoted back in an error message.
SECRET_FIELDS = frozenset({"uniapi_key", "fal_key", "fal_key_id", "fal_key_secret", "http_token", "database_url"})
# An MCPB host passes an optional setting left empty as its literal placeholder, e.g. "${user_config.fal_key}".
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the environment variable(s), listed in `variables`."""

    def __init__(self, message: str, variables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.variables = variables


def where_to_set(variables: str) -> str:
    """Where a user sets a variable, for every way of running the server (quoted in errors)."""
    return (
        f'Set {variables} where the server is started: in your MCP client\'s config, in the "env" block of this '
        "server's entry (claude_desktop_config.json, ~/.cursor/mcp.json, ...); in the extension's settings if you "
        f"installed the fal-queue-mcp bundle in Claude Desktop; with `claude mcp add ... --env NAME=value` in Claude "
        "Code; or with `export NAME=value` in the shell that starts it. Then restart the server."
    )


def missing_key_message(provider: str) -> str:
    """The answer to a call that needs a key when none is set: which variable, and where to set it."""
    return (
        f"No API key is configured (provider '{provider}'). Set UNIAPI_KEY to your UniAPI token, or FAL_KEY to your "
        "fal key to go to fal directly. " + where_to_set("it")
    )


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Provider
    base_url: str
    uniapi_key: SecretStr | None = None
    fal_key: SecretStr | None = None
    fal_key_id: SecretStr | None = None
    fal_key_secret: SecretStr | None = None
    state_dir: Path | None = Field(None, description="where the job ledger lives; default: the user state dir")
    submit_timeout: float = Field(60.0, gt=0, le=600, description="seconds to wait for a submit's answer")
    request_timeout: float = Field(20.0, gt=0, le=600, description="seconds to wait for one status/result answer")
    connect_timeout: float = Field(10.0, gt=0, le=120, description="seconds to open a connection")
    retry_deadline: float = Field(30.0, ge=0, le=600, description="total seconds a GET may spend on retries")
    max_connections: int = Field(20, ge=1, le=1000, description="upstream connection pool size")
    max_log_lines: int = Field(20, ge=0, le=1000, description="log lines returned by get_fal_status")
    max_response_bytes: int = Field(8_000_000, ge=1024, description="largest upstream answer read (once decoded)")
    max_stream_event_bytes: int = Field(1_000_000, ge=1024, description="largest status-stream event read")
    max_stream_bytes: int = Field(32_000_000, ge=1024, description="most bytes one status stream is read for")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    max_wait_seconds: float = Field(50.0, ge=0, le=600, description="cap on get_fal_result's wait_seconds")
    poll_first_interval: float = Field(1.0, gt=0, le=60, description="first status poll interval while waiting")
    poll_max_interval: float = Field(2.75, gt=0, le=300, description="longest status poll interval while waiting")
    progress_interval: float = Field(2.0, gt=0, le=60, description="most seconds between progress notifications")
    max_streams: int = Field(10, ge=0, le=1000, description="status streams open at once; other waits poll")
    use_status_stream: bool = Field(True, description="wait through fal's status stream where the provider has one")
    file_roots: tuple[Path, ...] = Field(
        default_factory=lambda: (Path.home(),), description="folders local files may be read from (os.pathsep list)"
    )
    max_upload_bytes: int = Field(8 * 1024 * 1024, ge=1, description="largest local file read for upload")
    storage_token_base: str = Field("https://rest.fal.ai", description="fal storage token host (needs a fal key)")
    storage_upload_base: str | None = Field(None, description="fal storage upload host; default: the token's")

    watch_jobs: bool = Field(True, description="watch unfinished jobs and store each result as it completes")
    watch_first_interval: float = Field(5.0, gt=0, le=3600, description="first check of a watched job, seconds")
    watch_max_interval: float = Field(30.0, gt=0, le=3600, description="longest interval between checks of a job")
    watch_max_jobs: int = Field(50, ge=1, le=10_000, description="unfinished jobs watched at once")
    watch_max_age: float = Field(6 * 3600.0, gt=0, description="seconds after submit a job stops being watched")
    max_stored_result_bytes: int = Field(1_000_000, ge=1024, description="largest result JSON kept in the ledger")
    download_dir: Path | None = Field(None, description="where downloads go; default: Downloads/fal-queue-mcp")
    max_download_bytes: int = Field(500 * 1024 * 1024, ge=1, description="largest media file downloaded")
    download_timeout: float = Field(300.0, gt=0, le=3600, description="seconds one media download may take")
    max_download_files: int = Field(20, ge=1, le=1000, description="most media files one result may download")
    max_input_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest submit input, as JSON")
    max_prompt_chars: int = Field(20_000, ge=1, description="longest prompt accepted for any model")
    http_token: SecretStr | None = Field(None, description="bearer token HTTP clients must send")
    http_allowed_hosts: tuple[str, ...] = Field((), description="extra Host names HTTP clients may use")
    http_max_connections: int = Field(200, ge=1, le=100_000, description="HTTP client connections open at once")
    http_max_pending: int = Field(32, ge=1, le=10_000, description="HTTP connections still sending their request")
    http_request_timeout: float = Field(10.0, gt=0, le=600, description="seconds an HTTP request may take to arrive")
    http_max_request_bytes: int = Field(
        64 * 1024 * 1024, ge=65536, description="largest HTTP request (head and body) accepted"
    )
    max_completion_scan: int = Field(
        1000, ge=1, le=100_000, description="folder entries or recent jobs looked at for one completion answer"
    )
    max_subscriptions: int = Field(
        100, ge=1, le=100_000, description="resources one client (or one listen stream) may follow"
    )
    max_subscription_bytes: int = Field(
        64 * 1024, ge=1024, le=16 * 1024 * 1024, description="total size of the URIs one client (or stream) follows"
    )
    http_max_sessions: int = Field(
        1000, ge=1, le=100_000, description="stateful HTTP sessions kept; when full, the longest idle one is closed"
    )
    http_session_idle_timeout: float = Field(
        1800.0, gt=0, le=7 * 24 * 3600, description="seconds a stateful HTTP session may stay idle"
    )
    http_stateless: bool = Field(True, description="serve each HTTP request on its own: any instance serves any")
    database_url: SecretStr | None = Field(None, description="PostgreSQL ledger URL (a secret); default: SQLite")
    database_pool_size: int = Field(5, ge=1, le=100, description="PostgreSQL connections one instance holds")
    watch_lease: float = Field(30.0, ge=2, le=3600, description="seconds a follower's lease on a job lasts unrenewed")
    task_input_seconds: float = Field(600.0, gt=0, le=86400, description="how long an MCP task waits for an answer")
    max_input_tasks: int = Field(1000, ge=1, le=100_000, description="MCP tasks waiting for answers kept in memory")
    # UniAPI documents `Key` for its FalAI route; its Kling and Luma routes are not documented (relays use Bearer).
    # A 401 is tried once with the other scheme, and the one that worked is used until the server stops.
    fal_auth: AuthScheme = Field("Key", description="auth scheme on the fal queue route: Key or Bearer")
    kling_auth: AuthScheme = Field("Bearer", description="auth scheme on UniAPI's Kling routes: Bearer or Key")
    luma_auth: AuthScheme = Field("Bearer", description="auth scheme on UniAPI's Luma routes: Bearer or Key")
    prices_file: Path | None = Field(None, description="JSON price table; overrides fal's prices (UniAPI's rates)")
    platform_url: str = Field(FAL_PLATFORM_URL, description="fal's platform API (prices; needs a fal key)")
    price_cache_seconds: float = Field(86400.0, ge=0, le=30 * 86400, description="how long a fetched price is kept")
    pricing_timeout: float = Field(3.0, gt=0, le=60, description="seconds a price lookup may add to a submit")
    max_job_cost: float | None = Field(None, ge=0, description="USD one job may cost at most (estimate)")
    daily_budget: float | None = Field(None, ge=0, description="USD all jobs of one day may cost at most")
    confirm_above: float | None = Field(None, ge=0, description="USD above which the user is asked first")
    allow_unpriced: bool = Field(False, description="with a cap set, still submit models whose price is unknown")
    time_zone: str = Field("UTC", description="the time zone whose days the daily budget counts")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never quotes the value: it may hold a password.
        if value is None:
            return value
        url = value.get_secret_value()
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a PostgreSQL URL such as postgresql://user:password@host:5432/dbname")
        # libpq ends the user and password at the first '@' (and Python's URL parser at the last, or at a '/',
        # '?' or '#'): a password holding one would be cut, and its tail taken for the host and quoted in errors.
        if url.count("@") > 1 or ("@" in url and "@" not in parts.netloc):
            raise ValueError(
                "has an '@', '/', '?' or '#' in its user name or password: percent-encode them (@ is %40, / is %2F, "
                "? is %3F, # is %23), e.g. postgresql://user:p%40ss@host:5432/dbname"
            )
        return value

    @field_validator("http_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @field_validator("file_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(Path(part).expanduser() for part in value.split(os.pathsep) if part.strip())
        return value

    @field_validator("storage_token_base", "storage_upload_base")
    @classmethod
    def _check_storage_base(cls, value: str | None) -> str | None:
        return None if value is None else _checked_base(value)

    @field_validator("platform_url")
    @classmethod
    def _check_platform_url(cls, value: str) -> str:
        return _checked_base(value)

    @field_validator("time_zone")
    @classmethod
    def _check_time_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name such as UTC or Europe/Paris") from None
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return _checked_base(value)

    @model_validator(mode="before")
    @classmethod
    def _platform_beside_a_local_upstream(cls, values: object) -> object:
        if isinstance(values, dict) and values.get("platform_url") is None:
            return {**values, "platform_url": _default_platform(values.get("base_url"))}
        return values

    @model_validator(mode="after")
    def _check_fal_key_pair(self) -> Settings:
        if (self.fal_key_id is None) != (self.fal_key_secret is None):
            raise ValueError("FAL_KEY_ID and FAL_KEY_SECRET must be set together")
        return self

    @property
    def key_variable(self) -> str:
        """The variable a user sets to give this provider a key."""
        return "UNIAPI_KEY" if self.provider == "uniapi" else "FAL_KEY"

    def api_key(self) -> str | None:
        """The key for the configured provider, or None when none is set."""
        if self.provider == "uniapi":
            return self.uniapi_key.get_secret_value() if self.uniapi_key else None
        return self.fal_api_key()

    def secrets(self) -> list[str]:
        """Every key value configured, for redaction."""
        values = (self.uniapi_key, self.fal_key, self.fal_key_id, self.fal_key_secret, self.http_token)
        keys = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        return keys + self.database_secrets()

    def database_secrets(self) -> list[str]:
        """The database URL's password, as written and decoded (the URL's other parts are not secret, and
        redacting them would blank words such as 'postgresql' from every message)."""
        if self.database_url is None:
            return []
        parts = urlsplit(self.database_url.get_secret_value())
        written = [parts.netloc.rpartition("@")[0].partition(":")[2]] if "@" in parts.netloc else []
        written += [value for key, value in parse_qsl(parts.query) if key == "password"]
        found = {text for raw in written for text in (raw, unquote(raw)) if text}
        return sorted(found, key=len, reverse=True)

    def fal_api_key(self) -> str | None:
        """A fal key, whatever the provider: only fal's own storage accepts uploads (a UniAPI token cannot)."""
        if self.fal_key is not None:
            return self.fal_key.get_secret_value()
        if self.fal_key_id is not None and self.fal_key_secret is not None:
            return f"{self.fal_key_id.get_secret_value()}:{self.fal_key_secret.get_secret_value()}"
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read the settings from `environ` (default: the process environment); empty values, and values that are
        still an unfilled `${...}` placeholder, count as unset."""
        env = os.environ if environ is None else environ
        raw: dict[str, object] = {}
        for field, var in ENV_NAMES.items():
            value = env.get(var, "").strip()
            if value and not _PLACEHOLDER.fullmatch(value):
                raw[field] = value
        unexpanded = [var for field, var in ENV_NAMES.items() if _PLACEHOLDER.search(str(raw.get(field, "")))]
        if unexpanded:
            raise SettingsError(
                f"invalid configuration: {', '.join(unexpanded)}: contains an unexpanded ${{...}} placeholder; "
                "give the full value (e.g. a full path)",
                tuple(unexpanded),
            )
        raw.setdefault("provider", _default_provider(raw))
        provider = str(raw["provider"])
        if "base_url" not in raw and provider in PROVIDER_BASE_URLS:
            raw["base_url"] = PROVIDER_BASE_URLS[provider]
        raw.update(overrides)
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            # An unknown provider has no default base URL: report the provider, not a missing FAL_MCP_BASE_URL.
            unset_base = "base_url" not in raw
            errors = [e for e in exc.errors(include_url=False) if not (unset_base and _field(e) == "base_url")]
            raise SettingsError(
                _describe(errors), tuple(ENV_NAMES.get(_field(e), "configuration") for e in errors)
            ) from None


# Settings holding a URL: quoted in errors without its user info, query and fragment (credentials go there).
_URL_FIELDS = frozenset({"base_url", "storage_token_base", "storage_upload_base"})
_USER_INFO = re.compile(r"^([^/?#]*//)?[^/?#]*@")


def _checked_base(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an http(s) URL such as https://api.uniapi.io")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry a query, fragment or credentials")
    try:
        port = parts.port  # None when there is none
    except ValueError:  # not a number, or above 65535
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("has a port that is not a number from 1 to 65535")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("plain http is allowed only for loopback hosts (127.0.0.1, localhost); use https")
    return value.rstrip("/")


def _without_credentials(url: str) -> str:
    """`url` as it may be quoted: user info masked, query and fragment cut off."""
    shown = _USER_INFO.sub(lambda match: f"{match.group(1) or ''}***@", url, count=1)
    cut = min((i for i in (shown.find("?"), shown.find("#")) if i >= 0), default=-1)
    return shown if cut < 0 else shown[:cut] + "?..."


def _default_platform(base_url: object) -> str:
    """fal's platform API (prices, credits); beside a loopback upstream (the sandbox, a test double) it is that
    upstream's /v1, so a local setup never sends a fal key out to the real platform."""
    host = urlsplit(base_url).hostname if isinstance(base_url, str) else None
    if host and is_loopback_host(host):
        return str(base_url).rstrip("/") + "/v1"
    return FAL_PLATFORM_URL


def _default_provider(raw: Mapping[str, object]) -> str:
    if "uniapi_key" in raw:
        return "uniapi"
    if "fal_key" in raw or "fal_key_id" in raw:
        return "fal"
    return "uniapi"


def _field(error: ErrorDetails) -> str:
    return str(error["loc"][0]) if error["loc"] else ""


def _describe(errors: list[ErrorDetails]) -> str:
    lines = []
    for error in errors:
        field = _field(error)
        var = ENV_NAMES.get(field, "configuration")
        given = error.get("input")
        # the value given helps (FAL_MCP_PROVIDER=falai), unless it is a key (or a URL's credentials)
        if field in _URL_FIELDS and isinstance(given, str):
            given = _without_credentials(given)
        shown = (
            f" (got {given!r})" if field in ENV_NAMES and field not in SECRET_FIELDS and isinstance(given, str) else ""
        )
        lines.append(f"{var}: {error['msg']}{shown}")
    return "invalid configuration: " + "; ".join(lines)
