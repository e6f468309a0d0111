"""The archive layer: the DANDI REST API and S3 over HTTP (the only importer of httpx).

`ArchiveClient` is the entry point; `ArchiveClient.objects` (an `ObjectStore`) reads and
writes object bytes.  Retries (`RetryPolicy`), token handling and error mapping are shared
by both.
"""

from dandifs.archive.auth import TokenPolicy as TokenPolicy
from dandifs.archive.auth import find_token as find_token
from dandifs.archive.client import ArchiveClient as ArchiveClient
from dandifs.archive.instances import (
    Instance as Instance,
)
from dandifs.archive.instances import (
    UnknownInstance as UnknownInstance,
)
from dandifs.archive.instances import (
    known_instances as known_instances,
)
from dandifs.archive.instances import (
    resolve_instance as resolve_instance,
)
from dandifs.archive.objects import ObjectStore as ObjectStore
from dandifs.archive.retry import RetryPolicy as RetryPolicy
from dandifs.archive.session import RequestStats as RequestStats
from dandifs.archive.values import (
    BlobExists as BlobExists,
)
from dandifs.archive.values import (
    Completion as Completion,
)
from dandifs.archive.values import (
    UploadedPart as UploadedPart,
)
from dandifs.archive.values import (
    UploadPart as UploadPart,
)
from dandifs.archive.values import (
    UploadStarted as UploadStarted,
)
