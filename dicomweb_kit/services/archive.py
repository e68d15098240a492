"""Study, series and instance download as one ``application/zip`` archive, streamed.

``application/zip`` for WADO-RS retrieve comes from DICOM Supplement 211 ("DICOMweb Support for
the application/zip Payload"): the whole study or series as one file that a browser can save, for
people and for machine-learning pipelines that do not speak ``multipart/related``. Table 10.4.4-1
of PS3.18 2025a has no ``application/zip`` row for Instance Resources, so it is optional here:
``multipart/related; type="application/dicom"`` stays the default, and the archive is sent only
when the client prefers it (``Accept: application/zip`` or ``?accept=application/zip``, PS3.18
§8.3.3.1). No Content-Length: the archive's size is known only once it is written.

The archive holds the instances **as stored** (Part 10 files, byte for byte): it is an archive of
stored objects, so no transfer syntax is applied. ``application/zip; transfer-syntax=X`` is
accepted only when every instance is stored in X (or X is ``*``), else 406.

Two layouts:

* readable (default): ``{PatientID}_{StudyDate}/{SeriesNumber}_{Modality}/{InstanceNumber}.dcm``,
  every component sanitised (see :func:`safe_component`) and made unique;
* DICOM File-set (``?dicomdir=true``, as Orthanc's ``/media``): PS3.12 Annex V (ZIP File
  Media) with PS3.10 §8.2 File IDs ``DICOM/ST000001/SE000001/IM000001`` (at most 8 characters
  of A-Z, 0-9 and ``_`` per component, no extension) and a DICOMDIR (PS3.3 Annex F, Basic
  Directory IOD) at the root, written last since it is built from the records as they stream.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from pydicom import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.fileset import DIRECTORY_RECORDERS
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid

from ..codecs import dicom_json
from ..codecs.zip_stream import ZipEntry, write_zip
from ..index import InstanceRecord
from ..media_types import Offer, negotiate
from ..resources import ResourceKey
from ..storage import exactly
from .wado import require_summary

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["ZIP", "ArchivePlan", "archive_body", "plan_archive", "safe_component"]

ZIP = "application/zip"


class ArchivePlan(msgspec.Struct, frozen=True):
    """What an archive download will send.

    Attributes:
        scope: the study, series or instance.
        dicomdir: PS3.10 File IDs and a DICOMDIR (a DICOM File-set) instead of readable names.
        filename: the archive's suggested file name (Content-Disposition).
    """

    scope: ResourceKey
    dicomdir: bool
    filename: str


async def plan_archive(
    kit: DicomWeb,
    scope: ResourceKey,
    accept: str | None,
    /,
    *,
    accept_param: str | None = None,
    dicomdir: bool = False,
) -> ArchivePlan:
    """Check that ``scope`` exists (404) and that the client takes ``application/zip`` (406)."""
    summary = await require_summary(kit, scope)
    # Instances go in as stored: a transfer-syntax parameter can only name the one they share.
    stored = summary.transfer_syntaxes if len(summary.transfer_syntaxes) == 1 else ()
    negotiate(accept, [Offer(ZIP, transfer_syntaxes=tuple(stored))], accept_param=accept_param)
    level = scope.level or "study"
    uid = scope.instance or scope.series or scope.study
    return ArchivePlan(scope, dicomdir, f"{level}-{uid}.zip")


def archive_body(kit: DicomWeb, plan: ArchivePlan) -> AsyncIterator[bytes | memoryview]:
    """The ZIP archive of every instance under ``plan.scope``, one blob at a time."""
    names: _Names = _FileSet() if plan.dicomdir else _Readable()

    async def entries() -> AsyncIterator[ZipEntry]:
        async for record in kit.index.records(plan.scope):
            # The size is the entry's ZIP64 decision: a blob that outgrew its record could pass
            # 4 GiB in an entry written without ZIP64, so a mismatch breaks the archive off.
            chunks = exactly(kit.blobs.get(record.blob_key), key=record.blob_key, size=record.size)
            yield ZipEntry(names.name(record), chunks, size=record.size)
        if isinstance(names, _FileSet):
            data = await anyio.to_thread.run_sync(names.dicomdir)
            yield ZipEntry("DICOMDIR", _one(data), size=len(data), compress=True)

    return write_zip(entries())


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


# --------------------------------------------------------------------------- readable names

_UNSAFE = re.compile(r"[^\w.^-]+")  # \w is Unicode-aware: letters of any script stay
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))]
)


def safe_component(value: object, /, *, fallback: str, limit: int = 64) -> str:
    """``value`` as one path component that is safe on every file system.

    Anything but letters, digits, ``_ . ^ -`` becomes ``_`` (so no separator, drive colon,
    control or wildcard character from the data survives); leading and trailing dots, spaces and
    underscores go (no ``..``, no hidden files, nothing Windows would trim); Windows device names
    (``CON``, ``NUL``, ``COM1``...) get a ``_`` prefix; at most ``limit`` characters. An empty
    result is ``fallback``.
    """
    text = _UNSAFE.sub("_", "" if value is None else str(value)).strip("._ ")[:limit].strip("._ ")
    if not text:
        return fallback
    if text.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    return text


def _value(attributes: Mapping[str, Any], tag: str) -> Any:
    values = attributes.get(tag, {}).get("Value") or [None]
    return values[0]


class _Names:
    def name(self, record: InstanceRecord, /) -> str:
        raise NotImplementedError


class _Readable(_Names):
    """``PatientID_StudyDate/SeriesNumber_Modality/InstanceNumber.dcm``, unique (ignoring case,
    as Windows and macOS do): a clash gets ``_2``, ``_3``... appended."""

    def __init__(self) -> None:
        self._directories: dict[str, str] = {}  # study or series UID -> its directory
        self._taken: set[str] = set()

    def _unique(self, stem: str, suffix: str = "") -> str:
        candidate, n = stem + suffix, 1
        while candidate.casefold() in self._taken:
            n += 1
            candidate = f"{stem}_{n}{suffix}"
        self._taken.add(candidate.casefold())
        return candidate

    def name(self, record: InstanceRecord, /) -> str:
        attributes = record.attributes
        study = self._directories.get(record.study_uid)
        if study is None:
            label = "_".join(
                safe_component(_value(attributes, tag), fallback="") for tag in ("00100020", "00080020")
            ).strip("_")
            study = self._directories[record.study_uid] = self._unique(label or "study")
        series = self._directories.get(record.series_uid)
        if series is None:
            label = "_".join(
                safe_component(_value(attributes, tag), fallback="") for tag in ("00200011", "00080060")
            ).strip("_")
            series = self._directories[record.series_uid] = self._unique(f"{study}/{label or 'series'}")
        number = _value(attributes, "00200013")
        stem = f"{number:04d}" if isinstance(number, int) and number >= 0 else record.instance_uid
        return self._unique(f"{series}/{safe_component(stem, fallback='instance')}", ".dcm")


# --------------------------------------------------------------------------- DICOM File-set

# Record keys copied from the first instance of each patient, study and series (PS3.3 F.5.1-3).
_PATIENT_KEYS = ("00080005", "00100010", "00100020", "00100030", "00100040")
_STUDY_KEYS = ("00080005", "00080020", "00080030", "00080050", "00081030", "0020000D", "00200010")
_SERIES_KEYS = ("00080005", "00080060", "0020000E", "00200011")
_ROOT = "DICOM"


class _Node:
    """One directory record to be: its keys, File ID component or file reference, and children."""

    __slots__ = ("children", "component", "keys", "reference")

    def __init__(self, keys: dict[str, Any], component: str = "") -> None:
        self.keys = keys  # DICOM JSON of the record's keys
        self.component = component  # ST000001, SE000001
        self.children: list[_Node] = []
        # (File ID components..., SOP class, SOP instance, transfer syntax) of a leaf record
        self.reference: tuple[str, ...] = ()


class _FileSet(_Names):
    """PS3.10 §8.2 File IDs, ``DICOM/ST000001/SE000001/IM000001``, and the DICOMDIR of them.

    Keeps a few hundred bytes per instance (its record keys) until the DICOMDIR is written.
    """

    def __init__(self) -> None:
        self._patients: dict[str, _Node] = {}
        self._studies: dict[str, _Node] = {}
        self._series: dict[str, _Node] = {}

    def name(self, record: InstanceRecord, /) -> str:
        attributes = record.attributes
        study = self._studies.get(record.study_uid)
        if study is None:
            patient_id = str(_value(attributes, "00100020") or "")
            patient = self._patients.get(patient_id)
            if patient is None:
                patient = self._patients[patient_id] = _Node(_pick(attributes, _PATIENT_KEYS))
            study = _Node(_pick(attributes, _STUDY_KEYS), f"ST{len(self._studies) + 1:06d}")
            self._studies[record.study_uid] = study
            patient.children.append(study)
        series = self._series.get(record.series_uid)
        if series is None:
            series = _Node(_pick(attributes, _SERIES_KEYS), f"SE{len(study.children) + 1:06d}")
            self._series[record.series_uid] = series
            study.children.append(series)
        file_id = (_ROOT, study.component, series.component, f"IM{len(series.children) + 1:06d}")
        image = _Node(_leaf_keys(attributes))
        image.reference = (*file_id, record.sop_class_uid, record.instance_uid, record.transfer_syntax_uid)
        series.children.append(image)
        return "/".join(file_id)

    def dicomdir(self) -> bytes:
        """The DICOMDIR file (PS3.3 Annex F; PS3.10 §7, Media Storage Directory Storage)."""
        return _encode_dicomdir(list(self._patients.values()))


def _pick(attributes: Mapping[str, Any], tags: Iterable[str]) -> dict[str, Any]:
    return {tag: attributes[tag] for tag in tags if tag in attributes}


# Leaf record types other than IMAGE, by SOP Class (PS3.3 Table F.4-1 and F.5); the rest are IMAGE.
_LEAF_TYPES = {
    "1.2.840.10008.5.1.4.1.1.481.2": "RT DOSE",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT STRUCTURE SET",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT PLAN",
    "1.2.840.10008.5.1.4.1.1.104.1": "ENCAP DOC",
    "1.2.840.10008.5.1.4.1.1.104.2": "ENCAP DOC",
    "1.2.840.10008.5.1.4.1.1.88.59": "KEY OBJECT DOC",
    "1.2.840.10008.5.1.4.1.1.11.1": "PRESENTATION",
}
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."


def _leaf_type(sop_class: str) -> str:
    if sop_class in _LEAF_TYPES:
        return _LEAF_TYPES[sop_class]
    return "SR DOCUMENT" if sop_class.startswith(_SR_PREFIX) else "IMAGE"


def _leaf_keys(attributes: Mapping[str, Any]) -> dict[str, Any]:
    # IMAGE records (nearly all) need only Instance Number; the rarer types keep everything but
    # bulk data until the DICOMDIR is written, for pydicom's recorder of that record type.
    sop_class = str(_value(attributes, "00080016") or "")
    if _leaf_type(sop_class) == "IMAGE":
        return _pick(attributes, ("00080005", "00080016", "00200013"))
    return {tag: attr for tag, attr in attributes.items() if "BulkDataURI" not in attr}


def _record(kind: str, keys: Mapping[str, Any], fallback: Iterable[str]) -> Dataset:
    """A directory record of type ``kind`` with its keys (PS3.3 F.5).

    pydicom's recorder for the type copies the keys and refuses a Type 1 key that the instance
    lacks; then the keys the instance has are copied as they are (a missing Type 1 key stays
    out rather than being invented).
    """
    source = dicom_json.json_dict_to_dataset(keys)
    try:
        record = DIRECTORY_RECORDERS[kind](source)
    except (ValueError, KeyError, AttributeError):
        record = Dataset()
        for keyword in fallback:
            if keyword in source:
                record[keyword] = source[keyword]
    if "SpecificCharacterSet" in source:
        record.SpecificCharacterSet = source.SpecificCharacterSet
    record.OffsetOfTheNextDirectoryRecord = 0
    record.RecordInUseFlag = 0xFFFF
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    record.DirectoryRecordType = kind
    return record


_FALLBACK_KEYS = {
    "PATIENT": ("PatientName", "PatientID"),
    "STUDY": ("StudyDate", "StudyTime", "StudyDescription", "StudyInstanceUID", "StudyID", "AccessionNumber"),
    "SERIES": ("Modality", "SeriesInstanceUID", "SeriesNumber"),
}


def _encode_dicomdir(patients: list[_Node]) -> bytes:
    # Directory records in depth-first order (PS3.3 F.3.2.2).
    flat: list[tuple[_Node, Dataset]] = []
    below = {"PATIENT": "STUDY", "STUDY": "SERIES", "SERIES": "LEAF"}

    def visit(nodes: list[_Node], kind: str) -> None:
        for node in nodes:
            if kind == "LEAF":
                *file_id, sop_class, instance, syntax = node.reference
                record = _record(_leaf_type(sop_class), node.keys, ("InstanceNumber",))
                record.ReferencedFileID = file_id
                record.ReferencedSOPClassUIDInFile = sop_class
                record.ReferencedSOPInstanceUIDInFile = instance
                record.ReferencedTransferSyntaxUIDInFile = syntax
            else:
                record = _record(kind, node.keys, _FALLBACK_KEYS[kind])
            flat.append((node, record))
            visit(node.children, below.get(kind, "LEAF"))

    visit(patients, "PATIENT")

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.FileSetID = ""
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0x0000
    # Offsets count from the first byte of the file (PS3.3 F.3.2.1). The records' offset
    # elements are fixed-length UL, so encoding each record once gives every position.
    prefix = io.BytesIO()
    ds.save_as(prefix, enforce_file_format=True)
    position = len(prefix.getvalue()) + 12  # + the Directory Record Sequence's element header
    offset: dict[int, int] = {}
    record_of: dict[int, Dataset] = {}
    for node, record in flat:
        offset[id(node)] = position
        record_of[id(node)] = record
        encoded = DicomBytesIO()
        encoded.is_little_endian, encoded.is_implicit_VR = True, False
        write_dataset(encoded, record)
        position += 8 + len(encoded.getvalue())  # item tag and length, then the record

    def link(siblings: list[_Node]) -> None:
        for node, following in zip(siblings, siblings[1:], strict=False):
            record_of[id(node)].OffsetOfTheNextDirectoryRecord = offset[id(following)]

    link(patients)
    for node, record in flat:
        if node.children:
            record.OffsetOfReferencedLowerLevelDirectoryEntity = offset[id(node.children[0])]
            link(node.children)
    if patients:
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = offset[id(patients[0])]
        ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = offset[id(patients[-1])]
    ds.DirectoryRecordSequence = [record for _, record in flat]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    if len(data) != position:  # the offsets would be wrong: never send such a DICOMDIR
        raise RuntimeError("the DICOMDIR's records did not encode to the lengths measured for them")
    return data
