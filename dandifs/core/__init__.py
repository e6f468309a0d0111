"""core: the one composition of the layers, and the operations every front end calls.

Front ends import this package (and `namespace/`, `errors`, `concurrency`), nothing else
of the core's layers.
"""

from dandifs.cache import CacheConfig
from dandifs.core.config import CoreConfig, default_cache_dir
from dandifs.core.core import Core, FileReader, open_core
from dandifs.core.drafts import FileWriter
from dandifs.core.pool import CorePool
from dandifs.resolve.entry import Entry, EntryKind
from dandifs.upload.state import Phase, UploadState

__all__ = [
    "CacheConfig",
    "Core", "CoreConfig", "CorePool", "Entry", "EntryKind", "FileReader", "FileWriter", "Phase",
    "UploadState",
    "default_cache_dir", "open_core"]
