"""WADO-RS thumbnails over HTTP (PS3.18 §10.4.1.1.4, §10.4.3.3.4), and their cache."""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from conftest import host_app
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomweb_kit import DicomWeb, Settings
from dicomweb_kit.render_cache import MemoryRenderCache
from dicomweb_kit.services import rendering
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio


async def store(client: httpx.AsyncClient, *blobs: bytes) -> None:
    body = b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b + b"\r\n" for b in blobs) + b"--b--"
    r = await client.post("/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"})
    assert r.status_code == 200, r.text


def flat(value: int, *, rows: int = 20, columns: int = 40, frames: int = 1, **attributes: object) -> Dataset:
    """An instance whose every pixel is ``value`` (frame ``i`` holds ``value + i``), window 0..255."""
    ds = make_dataset(rows=rows, columns=columns, BitsStored=16, HighBit=15, WindowCenter=127.5, WindowWidth=256,
                      VOILUTFunction="LINEAR_EXACT", **attributes)
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = np.concatenate([np.full(rows * columns, value + i, "<u2") for i in range(frames)]).tobytes()
    return ds


def path_of(ds: Dataset) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def shown(response: httpx.Response) -> tuple[tuple[int, int], int]:
    """(size, centre pixel value) of a PNG thumbnail."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    return image.size, int(np.asarray(image.convert("L"))[image.height // 2, image.width // 2])


PNG = {"Accept": "image/png"}


async def test_instance_thumbnail_default_size_and_viewport(client: httpx.AsyncClient) -> None:
    ds = flat(100)
    await store(client, part10_bytes(ds))
    r = await client.get(path_of(ds) + "/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (128, 64)  # Settings.thumbnail_size, aspect kept
    assert shown(await client.get(path_of(ds) + "/thumbnail", params={"viewport": "20,20"}, headers=PNG)) == (
        (20, 10),
        100,
    )
    for bad in ("20,20,0,0,5,5", "0,20", "x"):
        r = await client.get(path_of(ds) + "/thumbnail", params={"viewport": bad})
        assert r.status_code == 400 and "viewport" in r.text


async def test_thumbnail_has_no_annotations(client: httpx.AsyncClient) -> None:
    # PS3.18 §10.4.3.3.4: no patient information; rendering parameters other than viewport are ignored.
    ds = flat(100, rows=100, columns=100)
    await store(client, part10_bytes(ds))
    plain = await client.get(path_of(ds) + "/thumbnail", headers=PNG)
    asked = await client.get(path_of(ds) + "/thumbnail", params={"annotation": "patient", "window": "0,1"}, headers=PNG)
    assert asked.content == plain.content


async def test_frame_and_multi_frame_thumbnails(client: httpx.AsyncClient) -> None:
    ds = flat(100, frames=5)
    await store(client, part10_bytes(ds))
    assert shown(await client.get(path_of(ds) + "/thumbnail", headers=PNG))[1] == 102  # the middle frame
    assert shown(await client.get(path_of(ds) + "/frames/4/thumbnail", headers=PNG))[1] == 103
    assert (await client.get(path_of(ds) + "/frames/9/thumbnail")).status_code == 404


async def test_series_and_study_thumbnails_pick_a_representative(client: httpx.AsyncClient) -> None:
    study, first, second = generate_uid(), generate_uid(), generate_uid()
    # Series 2 is stored first; series 1 has the lowest Series Number. Instance numbers 3, 1, 2:
    # the middle one by Instance Number is number 2 (value 20).
    later = [flat(200, study=study, series=second, SeriesNumber=2, InstanceNumber=1)]
    chosen = [
        flat(value, study=study, series=first, SeriesNumber=1, InstanceNumber=number)
        for value, number in ((30, 3), (10, 1), (20, 2))
    ]
    await store(client, *(part10_bytes(ds) for ds in later + chosen))
    assert shown(await client.get(f"/studies/{study}/series/{first}/thumbnail", headers=PNG))[1] == 20
    assert shown(await client.get(f"/studies/{study}/series/{second}/thumbnail", headers=PNG))[1] == 200
    assert shown(await client.get(f"/studies/{study}/thumbnail", headers=PNG))[1] == 20
    assert (await client.get(f"/studies/{generate_uid()}/thumbnail")).status_code == 404
    assert (await client.get(f"/studies/{study}/thumbnail", headers={"Accept": "text/html"})).status_code == 406


@pytest.fixture
def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    decode = rendering.decode_stored_frame

    def counting(*args: object) -> object:
        calls.append(1)
        return decode(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(rendering, "decode_stored_frame", counting)
    return calls


async def test_thumbnail_cache_hit_does_not_decode(
    make_kit: Callable[..., DicomWeb], count_decodes: list[int]
) -> None:
    ds = flat(50)
    async with make_kit(Settings(on_duplicate="replace")) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as client:
            await store(client, part10_bytes(ds))
            first = await client.get(path_of(ds) + "/thumbnail", headers=PNG)
            assert len(count_decodes) == 1
            again = await client.get(path_of(ds) + "/thumbnail", headers=PNG)
            assert len(count_decodes) == 1 and again.content == first.content
            # Another size or media type is another entry.
            await client.get(path_of(ds) + "/thumbnail", params={"viewport": "10,10"}, headers=PNG)
            assert len(count_decodes) == 2
            # A replaced instance is rendered anew, never served stale.
            replacement = flat(150, study=ds.StudyInstanceUID, series=ds.SeriesInstanceUID, instance=ds.SOPInstanceUID)
            await store(client, part10_bytes(replacement))
            assert shown(await client.get(path_of(ds) + "/thumbnail", headers=PNG))[1] == 150
            assert len(count_decodes) == 3


async def test_a_custom_cache_is_used(make_kit: Callable[..., DicomWeb], count_decodes: list[int]) -> None:
    cache = MemoryRenderCache(1 << 20)
    base = make_kit()
    kit = DicomWeb(blobs=base.blobs, index=base.index, render_cache=cache)
    async with kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as client:
            ds = flat(50)
            await store(client, part10_bytes(ds))
            await client.get(path_of(ds) + "/thumbnail")
            assert cache.size > 0
    disabled = make_kit(Settings(thumbnail_cache_bytes=0))
    assert isinstance(disabled.render_cache, MemoryRenderCache) and disabled.render_cache.max_bytes == 0
