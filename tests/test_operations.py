"""`dicomweb-kit import`, `check` and `db upgrade` as an operator runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
from conftest import pydicom_files_with_pixels

from dicomweb_kit.testing import make_dataset, part10_bytes


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomweb_kit.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_import_check_repair(tmp_path: Path) -> None:
    source = tmp_path / "incoming"
    (source / "nested" / "deeper").mkdir(parents=True)
    datasets = [make_dataset() for _ in range(5)]
    for i, ds in enumerate(datasets):
        (source / ("nested/deeper" if i % 2 else "nested") / f"{i}.dcm").write_bytes(part10_bytes(ds))
    (source / "notes.txt").write_text("not DICOM")
    (source / "nested" / "junk.dcm").write_bytes(b"\0" * 500)
    data = tmp_path / "data"

    first = cli("import", str(source), "--data-dir", str(data))
    assert first.returncode == 0, first.stderr
    assert "imported 5 instances" in first.stdout
    assert "2 files skipped (not DICOM Part 10)" in first.stdout
    again = cli("import", str(source), "--data-dir", str(data))
    assert "imported 0 instances" in again.stdout and "5 already stored" in again.stdout

    assert cli("check", "--deep", "--data-dir", str(data)).returncode == 0
    # Break it: remove one blob file and drop a stray one in.
    blobs = sorted(p for p in (data / "blobs").rglob("*") if p.is_file() and ".tmp" not in p.parts)
    assert len(blobs) == 5
    blobs[0].unlink()
    shutil.copy(blobs[1], blobs[1].with_name("strayblob"))
    broken = cli("check", "--data-dir", str(data))
    assert broken.returncode == 1
    assert "1 missing, 0 corrupt" in broken.stdout
    fixed = cli("check", "--repair", "--data-dir", str(data))
    assert fixed.returncode == 0 and "dropped 1 records" in fixed.stdout
    assert cli("check", "--data-dir", str(data)).returncode == 0


def test_import_real_files(tmp_path: Path) -> None:
    source = tmp_path / "real"
    source.mkdir()
    files = pydicom_files_with_pixels()[:15]
    for path in files:
        shutil.copy(path, source / path.name)
    result = cli("import", str(source), "--data-dir", str(tmp_path / "data"))
    unique = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files}
    stored = int(result.stdout.split("imported ")[1].split()[0])
    already = int(result.stdout.split(" already stored")[0].split()[-1])
    rejected = int(result.stdout.split(" rejected")[0].split()[-1])
    assert stored + already + rejected == len(files)
    assert stored >= len(unique) - rejected


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    for _ in range(2):
        result = cli("db", "upgrade", "--data-dir", str(tmp_path / "data"))
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout


def test_extra_indexed_attribute_and_reindex(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for i, model in enumerate(["ScannerOne", "ScannerTwo"]):
        (source / f"{i}.dcm").write_bytes(part10_bytes(make_dataset(ManufacturerModelName=model)))
    data = ["--data-dir", str(tmp_path / "data")]
    assert cli("import", str(source), *data).returncode == 0
    result = cli("reindex", "--index-attribute", "ManufacturerModelName", *data)
    assert result.returncode == 0, result.stderr
    assert "reindexed 2 instances" in result.stdout
