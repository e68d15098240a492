"""Synthetic DICOM instances for tests: small, valid Part 10 files with chosen attributes."""

from __future__ import annotations

import io
from typing import Any

import msgspec
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ..codecs import dicom_json
from ..index import InstanceRecord
from ..resources import ResourceKey

__all__ = ["make_dataset", "make_record", "part10_bytes"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def make_dataset(
    *,
    study: str | None = None,
    series: str | None = None,
    instance: str | None = None,
    patient_name: str = "Doe^Jane",
    patient_id: str = "PID-1",
    modality: str = "CT",
    study_date: str = "20240102",
    rows: int = 4,
    columns: int = 4,
    **attributes: Any,
) -> Dataset:
    """A small CT-like instance (16-bit pixels) with file meta; extra keywords become attributes."""
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = instance or generate_uid()
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.Modality = modality
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC-1"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.arange(rows * columns, dtype="<u2").tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def part10_bytes(ds: Dataset, /) -> bytes:
    """``ds`` written as a DICOM Part 10 file."""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def make_record(ds: Dataset, /, *, blob_key: str = "blob", size: int = 0) -> InstanceRecord:
    """The index record the core would build for ``ds`` (metadata without pixel data)."""
    header = Dataset()
    for element in ds:
        if element.tag != 0x7FE00010:
            header.add(element)
    base = ResourceKey(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID).path()
    attributes = dicom_json.dataset_to_json_dict(header, bulk_data_uri=lambda path: f"{base}/bulkdata/{path}")
    return InstanceRecord(
        study_uid=ds.StudyInstanceUID,
        series_uid=ds.SeriesInstanceUID,
        instance_uid=ds.SOPInstanceUID,
        sop_class_uid=ds.SOPClassUID,
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        blob_key=blob_key,
        size=size,
        metadata=msgspec.Raw(dicom_json.encode(attributes)),
        attributes=attributes,
    )
