"""Token authentication and the user accounts behind the tokens."""

from __future__ import annotations

from dataclasses import dataclass

from dandifs.localarchive.db import Database
from dandifs.localarchive.problems import detail
from dandifs.localarchive.settings import ArchiveUser

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}


@dataclass(frozen=True)
class User:
    id: int
    username: str
    email: str
    first_name: str
    last_name: str
    status: str
    admin: bool

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def citation_name(self) -> str:
        """`Last, First`, the form the archive uses for the default contributor."""
        return f"{self.last_name}, {self.first_name}"

    @property
    def approved(self) -> bool:
        return self.admin or self.status == "APPROVED"


def ensure_users(db: Database, users: tuple[ArchiveUser, ...]) -> None:
    """Create (or refresh the tokens of) the accounts the settings name."""
    with db.tx() as conn:
        for account in users:
            conn.execute(
                "INSERT INTO users (username, email, first_name, last_name, token, admin)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (username) DO UPDATE SET token = excluded.token,"
                " admin = excluded.admin",
                (
                    account.username,
                    account.email,
                    account.first_name,
                    account.last_name,
                    account.token,
                    int(account.admin),
                ),
            )


def _user(row) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        status=row["status"],
        admin=bool(row["admin"]),
    )


def user_by_username(db: Database, username: str) -> User | None:
    row = db.one("SELECT * FROM users WHERE username = ?", (username,))
    return None if row is None else _user(row)


def user_by_id(db: Database, user_id: int) -> User:
    return _user(db.one("SELECT * FROM users WHERE id = ?", (user_id,)))


def authenticate(db: Database, authorization: str | None) -> User | None:
    """The user an `Authorization` header names; None for anonymous requests.

    Mirrors DRF's TokenAuthentication: a `token` keyword with a bad key is an error on every
    endpoint, while other schemes (an OAuth `Bearer` the archive does not know) are anonymous.
    """
    if not authorization:
        return None
    words = authorization.split()
    if not words or words[0].lower() != "token":
        return None
    if len(words) == 1:
        raise detail(401, "Invalid token header. No credentials provided.", **_CHALLENGE)
    if len(words) > 2:
        raise detail(
            401, "Invalid token header. Token string should not contain spaces.", **_CHALLENGE
        )
    row = db.one("SELECT * FROM users WHERE token = ?", (words[1],))
    if row is None:
        raise detail(401, "Invalid token.", **_CHALLENGE)
    return _user(row)
