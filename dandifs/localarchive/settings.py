"""Configuration of one local archive instance."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ArchiveUser:
    """An account that exists from the start, identified by its API token."""

    username: str
    email: str
    first_name: str
    last_name: str
    token: str
    admin: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(frozen=True)
class ArchiveSettings:
    """What the archive needs to know about where it lives and who may write to it.

    `api_url` is the API base as clients see it (it ends in `/api`); every absolute URL the
    archive puts into metadata (`contentUrl`, `manifestLocation`, `/info/` services) derives
    from it, while pagination links derive from each request's own URL, as the real archive's do.
    """

    api_url: str
    data_dir: Path
    db_path: Path
    demo_token: str
    instance_name: str = "DANDI"
    instance_identifier: str | None = "RRID:SCR_017571"
    doi_prefix: str | None = "10.80507"
    web_url: str | None = None
    demo_username: str = "demo@example.com"
    demo_first_name: str = "Demo"
    demo_last_name: str = "User"
    extra_users: tuple[ArchiveUser, ...] = field(default_factory=tuple)
    validation_delay: float = 0.0  # seconds the background jobs wait after a change

    def __post_init__(self) -> None:
        if not self.api_url.rstrip("/").endswith("/api"):
            raise ValueError(f"api_url must end in /api, got {self.api_url!r}")
        object.__setattr__(self, "api_url", self.api_url.rstrip("/"))

    @property
    def server_url(self) -> str:
        """The API base without its `/api` suffix (the real archive's DANDI_API_URL)."""
        return self.api_url[: -len("/api")]

    @property
    def webui_url(self) -> str:
        return (self.web_url or self.server_url).rstrip("/")

    @property
    def demo_user(self) -> ArchiveUser:
        return ArchiveUser(
            username=self.demo_username,
            email=self.demo_username,
            first_name=self.demo_first_name,
            last_name=self.demo_last_name,
            token=self.demo_token,
            admin=False,
        )

    @property
    def users(self) -> tuple[ArchiveUser, ...]:
        return (self.demo_user, *self.extra_users)
