"""The authorization policy without HTTP: decisions, narrowing terms and the core matcher, study
visibility through the index (both adapters), error mapping, construction rules."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ADAPTERS
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from pydicom.uid import generate_uid

from dicomweb_kit import (
    ConfigurationError,
    DicomWeb,
    Forbidden,
    InvalidQuery,
    ResourceNotFound,
    StorageUnavailable,
    instance_matches,
)
from dicomweb_kit.authorization import (
    ALLOW,
    DENY,
    Access,
    AuthorizationFailed,
    Authorizer,
    Decision,
    Narrow,
    anonymous,
    study_visible,
)
from dicomweb_kit.query.terms import SingleValue, UidList, Wildcard
from dicomweb_kit.resources import ResourceKey
from dicomweb_kit.services.ingest import ingest_instance
from dicomweb_kit.testing import make_dataset, make_record, part10_bytes

pytestmark = pytest.mark.anyio


def attrs(**keywords: Any) -> dict[str, Any]:
    return make_record(make_dataset(**keywords)).attributes


def test_where_builds_qido_terms() -> None:
    narrow = Narrow.where(InstitutionName="North*", PatientID=["A", "B "], StudyInstanceUID="1.2,1.3")
    by_key = {term.key: term for term in narrow.terms}
    assert by_key["00080080"].matcher == Wildcard("North*")
    assert by_key["00100020"].matcher == UidList(("A", "B"))
    assert by_key["0020000D"].matcher == UidList(("1.2", "1.3"))
    assert Narrow.where(AccessionNumber="ACC-1").terms[0].matcher == SingleValue("ACC-1")


def test_where_refuses_what_qido_would() -> None:
    with pytest.raises(InvalidQuery):
        Narrow.where(InstitutionNam="North")
    with pytest.raises(InvalidQuery):
        Narrow.where(StudyInstanceUID=["1.2", "not a uid"])


def test_narrowing_terms_match_with_the_core_matcher() -> None:
    north = attrs(patient_id="PA", InstitutionName="North Hospital")
    south = attrs(patient_id="PB", InstitutionName="South")
    by_institution = Narrow.where(InstitutionName="North*").terms
    by_patients = Narrow.where(PatientID=["PB", "PC"]).terms
    assert instance_matches(by_institution, north)
    assert not instance_matches(by_institution, south)
    assert instance_matches(by_patients, south)
    assert not instance_matches(by_patients, north)
    assert not instance_matches(Narrow.where(PatientID=[]).terms, north)  # an empty list: nothing
    assert not instance_matches(Narrow.where(InstitutionName="North").terms, attrs())  # no value: no match


async def test_study_visible_asks_the_index(adapter_name: str, tmp_path: Path) -> None:
    blobs, index = ADAPTERS[adapter_name](tmp_path)
    async with DicomWeb(blobs=blobs, index=index) as kit:  # type: ignore[arg-type]
        study = generate_uid()
        for institution in ("North", "East"):  # a study whose series differ: one match suffices
            ds = make_dataset(study=study, InstitutionName=institution)
            await ingest_instance(kit, _once(part10_bytes(ds)))
        assert await study_visible(kit, study, Narrow.where(InstitutionName="North").terms)
        assert await study_visible(kit, study, Narrow.where(InstitutionName="East").terms)
        assert await study_visible(kit, study, ())
        assert not await study_visible(kit, study, Narrow.where(InstitutionName="South").terms)
        assert not await study_visible(kit, generate_uid(), ())


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class _Request:
    def __init__(self, **scope: Any) -> None:
        self.scope = scope


ACCESS = Access("metadata", "RetrieveStudyMetadata", "GET", ResourceKey("1.2.3"))


async def test_decide_passes_identity_and_access() -> None:
    seen: list[tuple[Any, Access]] = []

    async def hook(identity: Any, access: Access) -> Decision:
        seen.append((identity, access))
        return ALLOW

    async def identify(request: Any) -> str:
        return "ann"

    assert await Authorizer(hook, identify=identify).decide(_Request(), ACCESS) is ALLOW
    assert await Authorizer(hook, identify=lambda r: "bob").decide(_Request(), ACCESS) is ALLOW
    assert await Authorizer(hook).decide(_Request(user="carl"), ACCESS) is ALLOW
    assert await Authorizer(hook).decide(_Request(), ACCESS) is ALLOW
    assert seen == [("ann", ACCESS), ("bob", ACCESS), ("carl", ACCESS), (None, ACCESS)]
    assert anonymous(_Request()) is None


async def test_failures_fail_closed_without_detail(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(identity: Any, access: Access) -> Decision:
        raise ValueError("internal detail")

    async def sloppy(identity: Any, access: Access) -> Any:
        return "allow"

    async def down(identity: Any, access: Access) -> Decision:
        raise StorageUnavailable("policy service down")

    with caplog.at_level(logging.ERROR, "dicomweb_kit.authorization"):
        for hook in (broken, sloppy):
            with pytest.raises(AuthorizationFailed) as failed:
                await Authorizer(hook).decide(_Request(), ACCESS)
            assert failed.value.http_status == 500
            assert failed.value.message == "authorization failed"
    assert "internal detail" in caplog.text  # logged for the operator, never sent
    with pytest.raises(StorageUnavailable):
        await Authorizer(down).decide(_Request(), ACCESS)


async def test_denied_is_403_or_404_as_if_absent() -> None:
    async def hook(identity: Any, access: Access) -> Decision:
        return DENY

    shown = Authorizer(hook).denied(ACCESS, "not yours")
    assert isinstance(shown, Forbidden) and (shown.http_status, shown.message) == (403, "not yours")
    hidden = Authorizer(hook, hide_denied=True).denied(ACCESS, "not yours")
    assert isinstance(hidden, ResourceNotFound)
    assert hidden.message == "no study studies/1.2.3 is stored here"  # as services.wado.require_summary says
    workitem = Access("workitem-retrieve", "RetrieveWorkitem", "GET", workitem="1.2.9")
    assert Authorizer(hook, hide_denied=True).denied(workitem).message == "no workitem 1.2.9 is stored here"
    search = Access("search", "SearchForStudies", "GET")
    assert isinstance(Authorizer(hook, hide_denied=True).denied(search), Forbidden)  # nothing to hide


def test_identify_and_hide_denied_need_a_hook() -> None:
    def make(**options: Any) -> DicomWeb:
        return DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex(), **options)

    with pytest.raises(ConfigurationError):
        make(hide_denied=True)
    with pytest.raises(ConfigurationError):
        make(identify=lambda r: None)
    assert make().authorizer is None
