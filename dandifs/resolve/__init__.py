"""resolve layer: namespace path -> `Entry` and folder listings, cached (published: long,
drafts: briefly), with single-flight lookups."""

from dandifs.resolve.caching import CacheStats
from dandifs.resolve.entry import Entry, EntryKind
from dandifs.resolve.resolver import Resolver

__all__ = ["CacheStats", "Entry", "EntryKind", "Resolver"]
