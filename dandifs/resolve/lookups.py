"""What the parts of the resolver share: the client, counted calls, caches, lifetimes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dandifs import errors
from dandifs.errors import NotFound
from dandifs.resolve.caching import CacheStats, Clock, MetadataCache
from dandifs.resolve.persistent import PublishedAnswers, Question
from dandifs.resolve.source import MetadataSource

T = TypeVar("T")


class Lookups:
    """The archive client behind counted calls, plus the cache settings every part uses.

    `answers`, when set, keeps the answers about published versions on disk (see
    `persistent`); which calls may use it is said by each call site.
    """

    def __init__(
        self,
        client: MetadataSource,
        *,
        ttl_published: float,
        ttl_draft: float,
        ttl_negative: float,
        clock: Clock,
        answers: PublishedAnswers | None = None,
    ) -> None:
        self.client = client
        self.answers = answers
        self.ttl_published = ttl_published
        self.ttl_draft = ttl_draft
        self.ttl_negative = ttl_negative
        self.clock = clock
        self.stats = CacheStats()

    @property
    def api_url(self) -> str:
        return self.client.instance.api_url

    def ttl(self, *, published: bool) -> float:
        return self.ttl_published if published else self.ttl_draft

    def cache(self, maxsize: int, weigh: Callable[[Any], int] | None = None) -> MetadataCache:
        """A cache of `maxsize` items (or entries, with `weigh`) sharing these settings."""
        return MetadataCache(
            maxsize, negative_ttl=self.ttl_negative, stats=self.stats, clock=self.clock, weigh=weigh
        )

    async def call(
        self, work: Callable[[], Awaitable[T]], *, kept: Question[T] | None = None
    ) -> T:
        """One call to the archive client, counted; embargo refusals read as "not found".

        Without a token an embargoed dandiset is invisible (the archive answers 401, or 403
        to a non-owner), exactly as if it did not exist.  A rejected token is not hidden:
        the person must fix it.

        `kept`: the call asks `kept` about a published version of an open dandiset, so its
        answer is taken from disk when it was kept before, and kept otherwise.
        """
        if kept is not None and self.answers is not None:
            found = await self.recall(kept)
            if found is not None:
                return found
            answer = await self._ask(work)
            await self.answers.keep(kept, answer)
            return answer
        return await self._ask(work)

    async def recall(self, question: Question[T]) -> T | None:
        """The answer to `question` kept on disk, or None (none kept, or no disk store)."""
        if self.answers is None:
            return None
        found = await self.answers.recall(question)
        if found is not None:
            self.stats.disk_hits += 1
        return found

    async def _ask(self, work: Callable[[], Awaitable[T]]) -> T:
        self.stats.archive_calls += 1
        try:
            return await work()
        except errors.InvalidToken:
            raise
        except errors.PermissionDenied as exc:
            raise NotFound(
                f"not found (or not visible without an owner's API token): {exc}"
            ) from exc
