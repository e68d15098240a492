"""Every pydicom bundled Part 10 file with pixel data: STOW it, WADO it back unchanged.

Files in a transfer syntax that PS3.18 §8.7.3.5 keeps off the web (Implicit VR Little Endian,
Explicit VR Big Endian) come back as Explicit VR Little Endian with the same elements and pixels.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import warnings
from pathlib import Path

import anyio
import httpx
import numpy as np
import pydicom
import pytest
from conftest import pydicom_files_with_pixels
from pydicom.uid import ExplicitVRLittleEndian

from dicomweb_kit.media_types import NOT_FOR_WEB

pytestmark = pytest.mark.anyio


def readable_with_pixels() -> list[Path]:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in pydicom_files_with_pixels():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=False)
            except Exception:
                continue
            if (
                "PixelData" in ds
                and ds.get("SOPInstanceUID")
                and ds.get("StudyInstanceUID")
                and ds.get("SeriesInstanceUID")
            ):
                out.append(path)
    return out


FILES = readable_with_pixels()


def test_the_corpus_is_large_and_varied() -> None:
    syntaxes = set()
    for path in FILES:
        syntaxes.add(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    assert len(FILES) >= 40 and len(syntaxes) >= 8, (len(FILES), syntaxes)


def parts(response: httpx.Response) -> list[bytes]:
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    return [part.get_payload(decode=True) for part in message.iter_parts()]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
async def test_stow_then_wado_returns_the_file(client: httpx.AsyncClient, path: Path) -> None:
    data = await anyio.Path(path).read_bytes()
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--b--"
    r = await client.post("/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"})
    assert r.status_code == 200, r.text
    url = r.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
    got = await client.get(url, headers={"Accept": "multipart/related; type=application/dicom; transfer-syntax=*"})
    assert got.status_code == 200
    [payload] = parts(got)
    original = pydicom.dcmread(io.BytesIO(data))
    if original.file_meta.TransferSyntaxUID not in NOT_FOR_WEB:
        assert payload == data
        return
    returned = pydicom.dcmread(io.BytesIO(payload))
    assert returned.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    # Group lengths (gggg,0000) are retired outside group 0002 (PS3.5 §7.2): writers drop them.
    kept = [e for e in original if e.tag.element != 0]
    assert [e.tag for e in returned] == [e.tag for e in kept]
    for element in kept:
        if element.tag != 0x7FE00010 and element.VR != "SQ":
            assert returned[element.tag].value == element.value, element
    try:
        expected = original.pixel_array
    except Exception:  # pixels pydicom itself cannot decode: compare the words
        return
    assert np.array_equal(returned.pixel_array, expected)
