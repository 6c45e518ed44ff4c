"""Run settings: command-line options, then ``PIPELINE_*`` environment variables, then a TOML
config file, then the defaults here (the first that sets a value wins).

The config file is ``--config FILE``, else ``$PIPELINE_CONFIG``, else ``./pipeline.toml`` when it
exists. Its keys are the option names with underscores (``max_pages = 500``)::

    out = "output"
    state = "state"
    rate = 0.5
    refresh_after = "7d"
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from pipeline.acquire.profile import REFERENCE, SiteProfile
from pipeline.errors import UsageError
from pipeline.version import __version__

DEFAULT_CONFIG_FILE = Path("pipeline.toml")
DEFAULT_USER_AGENT = (
    f"procedure-pages-pipeline/{__version__} (+https://example.org/procedure-pages-pipeline)"
)

_config_file: ContextVar[Path | None] = ContextVar("pipeline_config_file", default=None)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
# A longer interval would push due dates past the calendar's end (year 9999); a century is plenty.
MAX_INTERVAL = timedelta(days=36500)
# Slower than one request an hour is a typo (``1e-9``), and the pacer would sleep for ages.
MIN_RATE = 1 / 3600
# Printable ASCII only: HTTP header values are Latin-1 at best, and CR or LF would end the header.
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]+$")
_UNITS = {"": 86400.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_interval(value: Any) -> Any:
    """ "7d", "12h", "30m", "90s", "2w" or a bare number of days -> timedelta."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not abs(value) <= MAX_INTERVAL.days:  # also catches nan and inf
            raise ValueError(f"must be at most {MAX_INTERVAL.days} days")
        return timedelta(days=float(value))
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
            if seconds > MAX_INTERVAL.total_seconds():
                raise ValueError(f"must be at most {MAX_INTERVAL.days} days")
            return timedelta(seconds=seconds)
    return value


class Settings(BaseSettings):
    """Every option of every command, settable from the CLI, the environment or the config."""

    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="forbid", frozen=True)

    out: Path = Field(Path("output"), description="Output directory of the tables.")
    state: Path = Field(Path("state"), description="Crawl state and raw archive directory.")
    concurrency: int = Field(8, ge=1, le=512, description="Requests in flight overall.")
    per_host_concurrency: int = Field(2, ge=1, le=512, description="Requests in flight per host.")
    rate: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description="Requests per second per host; 0 = no limit.",
    )
    timeout: float = Field(30.0, gt=0, le=3600, description="Read timeout per request, seconds.")
    max_retries: int = Field(4, ge=0, le=50, description="Retries after the first attempt.")
    max_pages: int | None = Field(None, ge=1, description="Stop after fetching this many pages.")
    max_depth: int | None = Field(None, ge=0, description="Links followed from the seeds.")
    refresh_after: timedelta = Field(
        timedelta(days=7), description="Re-fetch a page when its last fetch is older than this."
    )
    obey_robots: bool = Field(True, description="Obey robots.txt (turn off for your own servers).")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Hosts besides the seeds' that the crawl may visit."
    )
    user_agent: str = Field(
        DEFAULT_USER_AGENT, min_length=1, description="User-Agent header (printable ASCII)."
    )
    follow: list[str] = Field(
        default_factory=lambda: list(REFERENCE.follow),
        description="Links found on pages are followed when they match one of these regular "
        "expressions (searched in the URL); default: the reference site's pages and listings.",
    )
    deny: list[str] = Field(
        default_factory=list, description="Links matching one of these are never followed."
    )
    listing: list[str] = Field(
        default_factory=lambda: list(REFERENCE.listing),
        description="URLs of pages of links (fetched for their links, never extracted).",
    )
    pages: list[str] = Field(
        default_factory=lambda: list(REFERENCE.pages),
        description="URLs of pages to extract when given as seeds (other seeds are navigation).",
    )
    workers: int | None = Field(
        None, ge=1, le=256, description="Processes that extract pages; default: every core."
    )
    log_format: Literal["text", "json"] = Field("text", description="Log lines as text or JSON.")
    progress: bool | None = Field(None, description="Progress bars; default: only on a terminal.")

    _interval = field_validator("refresh_after", mode="before")(parse_interval)

    @field_validator("refresh_after")
    @classmethod
    def _positive_interval(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive interval (e.g. 7d, 12h)")
        if value > MAX_INTERVAL:
            raise ValueError(f"must be at most {MAX_INTERVAL.days} days")
        return value

    @field_validator("out", "state", mode="before")
    @classmethod
    def _a_directory(cls, value: Any) -> Any:
        if isinstance(value, str | Path) and not str(value).strip():
            # Path("") is ".": the tables would land in whatever directory the run starts in.
            raise ValueError("must name a directory (it is empty)")
        return value

    @field_validator("out", "state")
    @classmethod
    def _home(cls, value: Path) -> Path:
        # "~/tables" given in quotes or from a file: the home directory, as a shell would
        # read it (Polars would expand it and the lock would not).
        return value.expanduser()

    @field_validator("rate")
    @classmethod
    def _sane_rate(cls, value: float) -> float:
        if 0 < value < MIN_RATE:
            raise ValueError("must be 0 (no limit) or at least one request an hour (0.0003)")
        return value

    @field_validator("user_agent")
    @classmethod
    def _header_safe(cls, value: str) -> str:
        if not _HEADER_VALUE.match(value):
            raise ValueError("must be printable ASCII on one line (an HTTP header value)")
        return value

    @field_validator("follow", "deny", "listing", "pages")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from exc
        return value

    def profile(self) -> SiteProfile:
        """The site's URL layout these settings describe."""
        return SiteProfile(
            follow=tuple(self.follow),
            deny=tuple(self.deny),
            listing=tuple(self.listing),
            pages=tuple(self.pages),
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def config_path(explicit: Path | None) -> Path | None:
    """The config file in force: the option, else $PIPELINE_CONFIG, else ./pipeline.toml."""
    if explicit is not None:
        return explicit
    env = os.environ.get("PIPELINE_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _origin(name: str, given: dict[str, Any], path: Path | None) -> str:
    """Where a bad value came from, in the order the sources win: option, environment, file."""
    if name in given:
        return " (from the command line)"
    variable = f"PIPELINE_{name.upper()}"
    if variable in os.environ:
        return f" (from ${variable})"
    return f" (in {path})" if path is not None else ""


def load_settings(config: Path | None = None, **options: Any) -> Settings:
    """Settings from the options given (None means "not given"), environment and config file.

    Raises :class:`UsageError` with one readable line for a bad file or a bad value.
    """
    path = config_path(config)
    if path is not None and not path.is_file():
        problem = "is not a regular file" if path.exists() else "does not exist"
        raise UsageError(f"config file {path} {problem}; fix --config or $PIPELINE_CONFIG")
    given = {key: value for key, value in options.items() if value is not None}
    token = _config_file.set(path)
    try:
        return Settings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        raise UsageError(
            f"bad value for {where}{_origin(where, given, path)}: {err['msg']}"
        ) from exc
    except SettingsError as exc:
        # pydantic-settings' own failure: a list or bool variable that is not valid JSON.
        raise UsageError(f"bad value in the environment or config file: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    finally:
        _config_file.reset(token)
