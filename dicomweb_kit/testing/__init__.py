"""Test support shipped with dicomweb-kit: adapter contract suites and synthetic DICOM data.

A third-party adapter runs the same contract suites as ours (needs pytest and anyio)::

    from dicomweb_kit.testing import BlobStoreContract, InstanceIndexContract

    class TestMyBlobs(BlobStoreContract):
        @pytest.fixture
        async def blob_store(self):
            store = MyBlobStore(...)
            yield store
            await store.aclose()
"""

from __future__ import annotations

from .contracts import BlobStoreContract, InstanceIndexContract
from .datasets import make_dataset, make_record, part10_bytes
from .event_contracts import EventBusContract, SubscriptionStoreContract
from .workitem_contracts import WorkitemStoreContract
from .workitems import make_workitem

__all__ = [
    "BlobStoreContract",
    "EventBusContract",
    "InstanceIndexContract",
    "SubscriptionStoreContract",
    "WorkitemStoreContract",
    "make_dataset",
    "make_record",
    "make_workitem",
    "part10_bytes",
]
