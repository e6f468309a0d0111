"""Everything a request or a background job needs: settings, state, bytes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from dandifs.localarchive.db import Database
from dandifs.localarchive.objectstore import ObjectStore
from dandifs.localarchive.settings import ArchiveSettings


@dataclass
class ArchiveContext:
    settings: ArchiveSettings
    db: Database
    store: ObjectStore
    pending_work: threading.Event = field(default_factory=threading.Event)

    def wake_worker(self) -> None:
        """Tell the background worker that something may need validating or ingesting."""
        self.pending_work.set()
