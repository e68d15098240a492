"""End-to-end DICOMweb server benchmark: our ``dicomweb-kit serve`` against a reference peer (Orthanc).

    python benchmarks/server_benchmark.py --quick                      # ours only, small corpus
    python benchmarks/server_benchmark.py --start-orthanc              # ours vs a fresh Orthanc
    python benchmarks/server_benchmark.py --peer-url http://127.0.0.1:8043/dicom-web
    python benchmarks/server_benchmark.py --scale 100000               # large archive, ours only

The script builds (or reuses) a synthetic CT corpus with /work/shared/corpus/make_corpus.py, starts
our server as a subprocess on a free port (``--backend sqlite`` = SQLite index + files in a fresh
temp dir; ``memory``; or a database URL), optionally starts Orthanc with the shared start.sh on a
fresh data dir, and measures on both servers with the same requests:

1. STOW-RS: batches of 20 instances per multipart/related request; one client stores the first
   studies, then four client processes store the rest (each instance is stored once per server,
   because Orthanc ignores re-stored instances).
2. QIDO-RS p50/p95 for a mix of queries, in JSON and in XML.
3. WADO-RS series retrieve MB/s (stored transfer syntax, every body read to the end).
4. Series metadata p50/p95 without gzip (and with gzip, ours only).
5. Pixels: a CT frame and frame 250 of a 500-frame JPEG instance (OHIF's Accept), rendered JPEG
   and PNG, thumbnail (ours only where the peer lacks it).

Latency samples alternate between the servers request by request, so noise on this shared box
hits both alike. Every answer is validated (status, result/part counts, DICM magic) so a fast
wrong answer cannot win. Numbers are from a 2-core machine shared with the servers: the client,
our server and the peer all compete for the same cores.

``--scale N`` builds (resumably, under /tmp/dwk-bench-scale-N) an archive of N tiny instances on our
server and measures the QIDO mix and a 500-instance series' metadata there. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _http import HttpConnection, HttpResponse, boundary_of, build_multipart, split_multipart, split_url
from _pixel_cases import first_ct_instance, jpeg_multiframe, pixel_requests

REPO = Path(__file__).resolve().parents[1]
MAKE_CORPUS = Path("/work/shared/corpus/make_corpus.py")
ORTHANC_DIR = Path("/work/shared/peers/orthanc")
DEFAULT_BENCH_DIR = Path(tempfile.gettempdir()) / "dwk-bench"
MB = 1_000_000  # throughput in decimal megabytes
BOUNDARY = "dwk-bench-2f1c7e9a5b3d4c60"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
JSON = "application/dicom+json"
XML_STANDARD = 'multipart/related; type="application/dicom+xml"'
RETRIEVE = 'multipart/related; type="application/dicom"; transfer-syntax=*'
STUDY_UID, SERIES_UID, REFERENCED_SOPS, FAILED_SOPS = "0020000D", "0020000E", "00081199", "00081198"


# --- corpus -------------------------------------------------------------------------------------


@dataclass
class Series:
    uid: str
    files: list[Path]


@dataclass
class Study:
    uid: str
    patient_id: str
    patient_name: str
    date: str
    series: list[Series]

    @property
    def files(self) -> list[Path]:
        return [f for se in self.series for f in se.files]


def corpus_shape(quick: bool) -> tuple[int, int, int]:
    """(studies, series per study, instances per series)."""
    return (5, 2, 20) if quick else (5, 4, 50)


def ensure_corpus(directory: Path | None, bench_dir: Path, shape: tuple[int, int, int]) -> Path:
    studies, series, instances = shape
    if directory is None:
        directory = bench_dir / f"corpus-ct-{studies}x{series}x{instances}"
    manifest = directory / "manifest.json"
    if manifest.exists():
        return directory
    print(f"building corpus in {directory} ...", flush=True)
    subprocess.run(
        [sys.executable, str(MAKE_CORPUS), "--out", str(directory), "--clean", "--studies", str(studies),
         "--series-per-study", str(series), "--instances-per-series", str(instances)],
        check=True,
    )  # fmt: skip
    return directory


def load_corpus(directory: Path) -> list[Study]:
    manifest = json.loads((directory / "manifest.json").read_text())
    studies = []
    for st in manifest["studies"]:
        series = [Series(se["SeriesInstanceUID"], sorted((directory / se["dir"]).glob("*.dcm"))) for se in st["series"]]
        studies.append(Study(st["StudyInstanceUID"], st["PatientID"], st["PatientName"], st["StudyDate"], series))
    if len(studies) < 3:
        raise SystemExit("the corpus needs at least 3 studies (1-client and 4-client STOW phases)")
    return studies


# --- servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    url: str  # http://host:port/prefix
    xml_accept: str = XML_STANDARD
    preexisting_studies: int = 0  # studies the server held before we stored anything
    notes: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return split_url(self.url)[0]

    @property
    def port(self) -> int:
        return split_url(self.url)[1]

    @property
    def prefix(self) -> str:
        return split_url(self.url)[2]

    def connect(self) -> HttpConnection:
        return HttpConnection(self.host, self.port)


def backend_args(backend: str, data_dir: Path) -> list[str]:
    if backend == "memory":
        return ["--database-url", "memory"]
    if backend == "sqlite":
        return ["--database-url", f"sqlite:///{data_dir / 'index.sqlite3'}", "--storage", str(data_dir / "blobs")]
    return ["--database-url", backend, "--storage", str(data_dir / "blobs")]  # an external database URL


class OurServer:
    """``dicomweb-kit serve`` as a subprocess; its log goes to ``<data dir>/server.log``."""

    def __init__(self, backend: str, data_dir: Path, port: int | None = None, workers: int = 1) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log_path = data_dir / "server.log"
        self.command = [
            sys.executable, "-m", "dicomweb_kit.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--root", "/dicom-web", "--log-level", "warning", "--workers", str(workers),
            *backend_args(backend, data_dir),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"our server exited during startup:\n{self.log_tail()}")
            try:
                with HttpConnection("127.0.0.1", self.port, timeout=5) as conn:
                    if conn.get("/dicom-web/studies?limit=1", {"Accept": JSON}).status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"our server did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Orthanc:
    """Orthanc + DICOMweb plugin via /work/shared/peers/orthanc/start.sh on a fresh data dir."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.started = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PORT": str(self.port), "ORTHANC_DATA": str(self.data_dir)}

    def start(self) -> None:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        out = subprocess.run(
            ["bash", str(ORTHANC_DIR / "start.sh")], env=self._env(), capture_output=True, text=True, check=False
        )
        if out.returncode:
            raise SystemExit(f"Orthanc did not start:\n{out.stdout}{out.stderr}")
        self.started = True

    def stop(self) -> None:
        if self.started:
            subprocess.run(["bash", str(ORTHANC_DIR / "stop.sh")], env=self._env(), capture_output=True, check=False)
            self.started = False


def count_studies(server: Server) -> int:
    with server.connect() as conn:
        resp = conn.get(f"{server.prefix}/studies", {"Accept": JSON})
    if resp.status == 204:
        return 0
    check(resp.status == 200, f"{server.name}: GET /studies answered {resp.status}")
    return len(json.loads(resp.body or b"[]"))


def probe_xml_accept(server: Server) -> None:
    """Use the standard XML Accept; fall back to bare application/dicom+xml if the server ignores it."""
    with server.connect() as conn:
        resp = conn.get(f"{server.prefix}/studies?limit=1", {"Accept": XML_STANDARD})
        if "dicom+xml" in resp.header("content-type"):
            return
        resp = conn.get(f"{server.prefix}/studies?limit=1", {"Accept": "application/dicom+xml"})
    if "dicom+xml" in resp.header("content-type"):
        server.xml_accept = "application/dicom+xml"
        server.notes.append(
            f"{server.name} answers QIDO in JSON to Accept: {XML_STANDARD}; XML rows use Accept: application/dicom+xml"
        )
    else:
        server.notes.append(f"{server.name} gives no XML QIDO answers; XML rows will fail validation")


# --- validation ---------------------------------------------------------------------------------


class ValidationError(Exception):
    pass


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ValidationError(message)


def json_results(resp: HttpResponse) -> list[dict[str, Any]]:
    if resp.status == 204:
        return []
    check(resp.status == 200, f"status {resp.status}: {resp.body[:200]!r}")
    check("json" in resp.header("content-type"), f"content-type {resp.header('content-type')!r}")
    body = gzip.decompress(resp.body) if resp.header("content-encoding") == "gzip" else resp.body
    results = json.loads(body)
    check(isinstance(results, list), "answer is not a JSON array")
    return results


def xml_results(resp: HttpResponse) -> int:
    if resp.status == 204:
        return 0
    check(resp.status == 200, f"status {resp.status}: {resp.body[:200]!r}")
    content_type = resp.header("content-type")
    check("dicom+xml" in content_type, f"content-type {content_type!r}")
    if content_type.startswith("application/dicom+xml"):  # a single document (not what PS3.18 asks)
        return resp.body.count(b"<NativeDicomModel")
    parts = split_multipart(resp.body, boundary_of(content_type))
    check(all(bytes(p[:400]).find(b"<NativeDicomModel") >= 0 for _, p in parts), "a part is not a NativeDicomModel")
    return len(parts)


def validate_stow(resp: HttpResponse, expected: int) -> None:
    check(resp.status == 200, f"STOW status {resp.status}: {resp.body[:300]!r}")
    answer = json.loads(resp.body)
    stored = answer.get(REFERENCED_SOPS, {}).get("Value", [])
    failed = answer.get(FAILED_SOPS, {}).get("Value", [])
    check(len(stored) == expected and not failed, f"STOW stored {len(stored)}/{expected}, failed {len(failed)}")


def validate_retrieve(resp: HttpResponse, expected: int) -> int:
    """Checks part count and DICM magic; returns the payload bytes."""
    check(resp.status == 200, f"retrieve status {resp.status}: {resp.body[:200]!r}")
    parts = split_multipart(resp.body, boundary_of(resp.header("content-type")))
    check(len(parts) == expected, f"retrieve gave {len(parts)} parts, expected {expected}")
    check(all(bytes(p[128:132]) == b"DICM" for _, p in parts), "a part is not DICOM Part 10")
    return sum(len(p) for _, p in parts)


# --- STOW ---------------------------------------------------------------------------------------


def batches_of(files: Sequence[Path], size: int = 20) -> list[list[Path]]:
    return [list(files[i : i + size]) for i in range(0, len(files), size)]


def stow_body(files: Sequence[Path], part_length: bool) -> tuple[bytes, int]:
    payloads = [f.read_bytes() for f in files]
    return build_multipart(payloads, BOUNDARY, part_length=part_length), sum(map(len, payloads))


@dataclass
class StowResult:
    instances: int
    payload_bytes: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.instances / self.seconds

    @property
    def mbps(self) -> float:
        return self.payload_bytes / MB / self.seconds


def stow_one_client(server: Server, bodies: Sequence[tuple[bytes, int, int]]) -> StowResult:
    answers = []
    with server.connect() as conn:
        t0 = time.perf_counter()
        for body, count, _ in bodies:
            answers.append(
                (conn.post(f"{server.prefix}/studies", body, {"Content-Type": STOW_TYPE, "Accept": JSON}), count)
            )
        elapsed = time.perf_counter() - t0
    for resp, count in answers:
        validate_stow(resp, count)
    return StowResult(sum(b[1] for b in bodies), sum(b[2] for b in bodies), elapsed)


def _stow_worker(
    url: str, batches: list[list[str]], part_length: bool, barrier: Any, results: Any
) -> None:  # runs in a child process
    host, port, prefix = split_url(url)
    bodies = [stow_body([Path(p) for p in batch], part_length) + (len(batch),) for batch in batches]
    errors: list[str] = []
    with HttpConnection(host, port) as conn:
        conn.get(f"{prefix}/studies?limit=1", {"Accept": JSON})  # open the connection before the start
        barrier.wait()
        t0 = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
        answers = [
            conn.post(f"{prefix}/studies", body, {"Content-Type": STOW_TYPE, "Accept": JSON}) for body, _, _ in bodies
        ]
        t1 = time.monotonic()
    for resp, (_, _, count) in zip(answers, bodies, strict=True):
        try:
            validate_stow(resp, count)
        except ValidationError as exc:
            errors.append(str(exc))
    results.put((t0, t1, sum(b[2] for b in bodies), sum(b[1] for b in bodies), errors))


def stow_concurrent(server: Server, shares: Sequence[Sequence[Path]], part_length: bool) -> StowResult:
    """One process per share, each storing its files in batches of 20 over its own connection."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(shares)), ctx.Queue()
    procs = []
    for share in shares:
        batches = [[str(f) for f in batch] for batch in batches_of(share)]
        procs.append(ctx.Process(target=_stow_worker, args=(server.url, batches, part_length, barrier, results)))
    for proc in procs:
        proc.start()
    outcomes = collect(procs, results)
    errors = [e for o in outcomes for e in o[4]]
    check(not errors, f"{server.name} STOW: {errors[:3]}")
    elapsed = max(o[1] for o in outcomes) - min(o[0] for o in outcomes)
    return StowResult(sum(o[2] for o in outcomes), sum(o[3] for o in outcomes), elapsed)


def collect(procs: Sequence[Any], results: Any) -> list[Any]:
    """One result per worker process; fails fast if a worker dies without reporting."""
    outcomes: list[Any] = []
    while len(outcomes) < len(procs):
        try:
            outcomes.append(results.get(timeout=1))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                for p in procs:
                    p.kill()
                raise SystemExit("a client process failed (traceback above)") from None
    for p in procs:
        p.join()
    return outcomes


def split_ways(files: Sequence[Path], ways: int) -> list[list[Path]]:
    size = math.ceil(len(files) / ways)
    return [list(files[i : i + size]) for i in range(0, len(files), size)]


# --- the disk's durable write rate ---------------------------------------------------------------


def _write_groups(directory: Path, sizes: Sequence[int], payload: bytes, concurrent: bool) -> None:
    """Write each group of 20 files, make them durable, fsync the directory; then delete them.

    ``concurrent``: the group's files are written first and fsynced together by 20 threads (what
    the server's group commit does); else each file is written and fsynced in turn.
    """
    from concurrent.futures import ThreadPoolExecutor

    def write(path: Path, size: int, sync: bool) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(payload)[:size]
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def fsync(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    directory.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(20) as pool:
        for start in range(0, len(sizes), 20):
            paths = [directory / f"{start + n}.dcm" for n in range(len(sizes[start : start + 20]))]
            for path, size in zip(paths, sizes[start : start + 20], strict=True):
                write(path, size, sync=not concurrent)
            if concurrent:
                list(pool.map(fsync, paths))
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    shutil.rmtree(directory)


def disk_limit(directory: Path, sizes: Sequence[int], writers: int, concurrent: bool) -> StowResult:
    """The rate at which this disk takes files of ``sizes`` durably (written, fsynced, directory
    fsynced, in groups of 20), split over ``writers`` threads: the machine's limit for a STOW that
    makes every blob durable before it is indexed."""
    from concurrent.futures import ThreadPoolExecutor

    payload = os.urandom(max(sizes))
    shares = [list(sizes[k::writers]) for k in range(writers)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        jobs = [
            pool.submit(_write_groups, directory / f"writer-{k}", share, payload, concurrent)
            for k, share in enumerate(shares)
        ]
        for job in jobs:
            job.result()
    return StowResult(len(sizes), sum(sizes), time.perf_counter() - t0)


# --- latency ------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Case:
    """One request to time: ``target`` under the server prefix, a validator returning an error or None."""

    name: str
    target: str
    headers: Callable[[Server], dict[str, str]]
    validate: Callable[[HttpResponse], None]


def measure_latency(
    servers: Sequence[Server], cases: Sequence[Case], reps: int, warmup: int = 3
) -> dict[tuple[str, str], list[float]]:
    """Per (server, case) latencies in seconds; requests alternate between servers."""
    samples: dict[tuple[str, str], list[float]] = {(s.name, c.name): [] for s in servers for c in cases}
    conns = {s.name: s.connect() for s in servers}
    try:
        for case in cases:
            for rep in range(warmup + reps):
                for server in servers if rep % 2 else reversed(servers):
                    conn = conns[server.name]
                    headers = case.headers(server)
                    t0 = time.perf_counter()
                    resp = conn.get(server.prefix + case.target, headers)
                    elapsed = time.perf_counter() - t0
                    try:
                        case.validate(resp)
                    except ValidationError as exc:
                        raise ValidationError(f"{server.name} {case.name}: {exc}") from exc
                    if rep >= warmup:
                        samples[(server.name, case.name)].append(elapsed)
    finally:
        for conn in conns.values():
            conn.close()
    return samples


def expect_count(expected: int, at_least: bool) -> Callable[[int], None]:
    def verify(n: int) -> None:
        check(
            n >= expected if at_least else n == expected, f"{n} results, expected {'>= ' if at_least else ''}{expected}"
        )

    return verify


@dataclass(frozen=True)
class Query:
    name: str
    path: str  # under the prefix, with query string
    expected: int
    study_level: bool  # a list of studies (other data on a shared peer can add results)


def qido_cases(queries: Sequence[Query], at_least: bool) -> list[Case]:
    cases = []
    for q in queries:
        verify = expect_count(q.expected, at_least and q.study_level)
        cases.append(
            Case(f"QIDO {q.name} JSON", q.path, lambda s: {"Accept": JSON}, lambda r, v=verify: v(len(json_results(r))))
        )
        cases.append(
            Case(
                f"QIDO {q.name} XML", q.path, lambda s: {"Accept": s.xml_accept}, lambda r, v=verify: v(xml_results(r))
            )
        )
    return cases


def corpus_queries(studies: Sequence[Study]) -> list[Query]:
    one = studies[0]
    same_patient = sum(s.patient_id == one.patient_id for s in studies)
    patched = sum("patch" in s.patient_name.lower() for s in studies)
    in_range = sum("20200101" <= s.date <= "20221231" for s in studies)
    series = one.series[0]
    return [
        Query("studies limit=25", "/studies?limit=25", min(25, len(studies)), True),
        Query("PatientID=<one>", f"/studies?PatientID={one.patient_id}", same_patient, True),
        Query("PatientName=*PATCH*", "/studies?PatientName=*PATCH*", patched, True),
        Query("StudyDate=2020-2022", "/studies?StudyDate=20200101-20221231", in_range, True),
        Query("includefield=all", "/studies?includefield=all", len(studies), True),
        Query("series of a study", f"/studies/{one.uid}/series", len(one.series), False),
        Query("instances of a series", f"/studies/{one.uid}/series/{series.uid}/instances", len(series.files), False),
    ]  # fmt: skip


def metadata_case(study: str, series: str, expected: int, name: str, gzip_: bool = False) -> Case:
    def validate(resp: HttpResponse) -> None:
        check(not gzip_ or resp.header("content-encoding") == "gzip", "no gzip answer to Accept-Encoding: gzip")
        results = json_results(resp)
        check(len(results) == expected, f"{len(results)} instances, expected {expected}")
        check(all(r.get(SERIES_UID, {}).get("Value") == [series] for r in results), "wrong SeriesInstanceUID")

    headers = {"Accept": JSON, **({"Accept-Encoding": "gzip"} if gzip_ else {})}
    return Case(name, f"/studies/{study}/series/{series}/metadata", lambda s: headers, validate)


# --- retrieve -----------------------------------------------------------------------------------


def measure_retrieve(
    servers: Sequence[Server], series: Sequence[tuple[str, Series]], passes: int
) -> dict[str, tuple[int, float]]:
    """(payload bytes, seconds) per server; series alternate between servers."""
    totals = {s.name: [0, 0.0] for s in servers}
    conns = {s.name: s.connect() for s in servers}
    try:
        for rep in range(passes + 1):  # pass 0 warms up
            for study_uid, se in series:
                for server in servers if rep % 2 else reversed(servers):
                    target = f"{server.prefix}/studies/{study_uid}/series/{se.uid}"
                    t0 = time.perf_counter()
                    resp = conns[server.name].get(target, {"Accept": RETRIEVE})
                    elapsed = time.perf_counter() - t0
                    try:
                        validate_retrieve(resp, len(se.files))
                    except ValidationError as exc:
                        raise ValidationError(f"{server.name} retrieve: {exc}") from exc
                    if rep:
                        totals[server.name][0] += len(resp.body)
                        totals[server.name][1] += elapsed
    finally:
        for conn in conns.values():
            conn.close()
    return {name: (int(t[0]), float(t[1])) for name, t in totals.items()}


# --- report -------------------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    unit: str
    ours: float | None
    peer: float | None = None
    higher_is_better: bool = True
    target_ratio: float | None = None  # ours/peer must be >= (higher better) or <= (lower better) this
    target_abs: float | None = None  # ours alone must be >= / <= this (scale mode)

    def ratio(self) -> float | None:
        if self.ours is None or self.peer is None or self.peer == 0:
            return None
        return self.ours / self.peer

    def target(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        if self.target_ratio is not None:
            return f"ours/peer {op} {self.target_ratio:g}"
        if self.target_abs is not None:
            return f"ours {op} {self.target_abs:g} {self.unit}"
        return ""

    def verdict(self) -> str:
        if self.target_ratio is not None:
            value, limit = self.ratio(), self.target_ratio
        elif self.target_abs is not None:
            value, limit = self.ours, self.target_abs
        else:
            return ""
        if value is None:
            return "n/a"
        return "PASS" if (value >= limit if self.higher_is_better else value <= limit) else "FAIL"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:.1f} {unit}"


def print_table(rows: Sequence[Row], peer_name: str | None) -> None:
    header = ["metric", "ours", peer_name or "peer", "ours/peer", "better", "target", "result"]
    lines = []
    for r in rows:
        ratio = r.ratio()
        lines.append([
            r.metric, fmt(r.ours, r.unit), fmt(r.peer, r.unit), "-" if ratio is None else f"{ratio:.2f}",
            "higher" if r.higher_is_better else "lower", r.target(), r.verdict(),
        ])  # fmt: skip
    if peer_name is None:
        header = [h for i, h in enumerate(header) if i not in (2, 3)]
        lines = [[c for i, c in enumerate(line) if i not in (2, 3)] for line in lines]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")


def latency_rows(
    samples: dict[tuple[str, str], list[float]],
    cases: Sequence[Case],
    ours: str,
    peer: str | None,
    targets: dict[float, float | None],
    *,
    absolute: bool = False,
) -> list[Row]:
    """One row per case and quantile; ``targets`` maps quantile -> target (ratio, or ms if absolute)."""
    rows = []
    for case in cases:
        for q, target in targets.items():
            our = percentile(samples[(ours, case.name)], q) * 1000
            their = percentile(samples[(peer, case.name)], q) * 1000 if peer else None
            rows.append(Row(
                f"{case.name} p{int(q * 100)}", "ms", our, their, higher_is_better=False,
                target_ratio=None if absolute else target, target_abs=target if absolute else None,
            ))  # fmt: skip
    return rows


def pooled_rows(
    samples: dict[tuple[str, str], list[float]],
    cases: Sequence[Case],
    label: str,
    ours: str,
    peer: str | None,
    target: float | None,
    absolute: bool,
) -> list[Row]:
    rows = []
    for q in (0.5, 0.95):
        our = percentile([x for c in cases for x in samples[(ours, c.name)]], q) * 1000
        their = percentile([x for c in cases for x in samples[(peer, c.name)]], q) * 1000 if peer else None
        t = target if q == 0.95 else None
        rows.append(Row(f"{label} p{int(q * 100)} (all queries pooled)", "ms", our, their, False,
                        None if absolute else t, t if absolute else None))  # fmt: skip
    return rows


# --- the comparison run -------------------------------------------------------------------------


def run_compare(args: argparse.Namespace) -> int:
    quick = args.quick
    bench_dir = Path(args.bench_dir)
    bench_dir.mkdir(parents=True, exist_ok=True)
    corpus_dir = ensure_corpus(Path(args.corpus) if args.corpus else None, bench_dir, corpus_shape(quick))
    studies = load_corpus(corpus_dir)
    reps = args.reps or (15 if quick else 50)

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=bench_dir))
    args.run_dir = str(run_dir)
    ours_proc = OurServer(args.backend, run_dir / "ours", args.port, args.workers)
    orthanc = Orthanc(run_dir / "orthanc", args.orthanc_port) if args.start_orthanc else None
    try:
        ours_proc.start()
        ours = Server("ours", ours_proc.url)
        servers = [ours]
        peer: Server | None = None
        if orthanc is not None:
            orthanc.start()
            peer = Server("orthanc", orthanc.url)
        elif args.peer_url:
            peer = Server("peer", args.peer_url.rstrip("/"))
        if peer is not None:
            servers.append(peer)
            peer.preexisting_studies = count_studies(peer)
            if peer.preexisting_studies:
                peer.notes.append(f"{peer.name} held {peer.preexisting_studies} studies before the run")
        print(f"corpus {corpus_dir}: {len(studies)} studies, {sum(len(s.files) for s in studies)} instances")
        print(f"ours: {' '.join(ours_proc.command[2:])}  (log {ours_proc.log_path})")
        if peer:
            print(f"peer: {peer.url}")
        rows = run_measurements(args, studies, servers, reps)
    except ValidationError as exc:
        print(f"VALIDATION FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        ours_proc.stop()
        if orthanc is not None:
            orthanc.stop()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    print()
    for server in servers:
        for note in server.notes:
            print(f"note: {note}")
    print_table(rows, peer.name if peer else None)
    return 0


def run_measurements(args: argparse.Namespace, studies: list[Study], servers: list[Server], reps: int) -> list[Row]:
    ours, peer = servers[0], (servers[1] if len(servers) > 1 else None)
    rows: list[Row] = []
    peer_name = peer.name if peer else None
    single = [f for s in studies[:2] for f in s.files]
    shares = split_ways([f for s in studies[2:] for f in s.files], 4)

    # 1. STOW. A peer that already holds our studies would ignore the re-store: do not compare then.
    stow_peer = peer is not None and peer.preexisting_studies == 0
    if peer is not None and not stow_peer:
        peer.notes.append(f"{peer.name} was not empty: its STOW is not measured, instances stored only where missing")
    bodies = [stow_body(b, args.part_length) + (len(b),) for b in batches_of(single)]
    bodies = [(body, count, payload) for body, payload, count in bodies]
    results: dict[str, StowResult] = {}
    for server in servers:
        print(f"STOW 1 client: {server.name} ...", flush=True)
        results[server.name] = stow_one_client(server, bodies)
    del bodies
    results4: dict[str, StowResult] = {}
    for server in servers:
        print(f"STOW 4 clients: {server.name} ...", flush=True)
        results4[server.name] = stow_concurrent(server, shares, args.part_length)
    for label, res, target in (("1 client", results, 2.0), ("4 clients", results4, 3.0)):
        p = res[peer.name] if peer and stow_peer else None
        rows.append(
            Row(f"STOW {label} instances/s", "inst/s", res[ours.name].rate, p.rate if p else None, True, target)
        )
        rows.append(Row(f"STOW {label} MB/s", "MB/s", res[ours.name].mbps, p.mbps if p else None, True))
    stow_rows = len(rows)

    for server in servers:
        probe_xml_accept(server)

    # 2. QIDO mix.
    at_least = peer is not None and peer.preexisting_studies > 0
    cases = qido_cases(corpus_queries(studies), at_least)
    print(f"QIDO: {len(cases)} queries x {reps} reps ...", flush=True)
    samples = measure_latency(servers, cases, reps)
    rows += pooled_rows(samples, cases, "QIDO mix", ours.name, peer_name, 0.5, absolute=False)
    rows += latency_rows(samples, cases, ours.name, peer_name, {0.5: None, 0.95: 0.5})

    # 3. Series retrieve.
    chosen = [(st.uid, se) for st in studies for se in st.series][: 2 if args.quick else 8]
    passes = 1 if args.quick else 3
    print(f"retrieve: {len(chosen)} series x {passes} passes ...", flush=True)
    totals = measure_retrieve(servers, chosen, passes)
    mbps = {name: b / MB / t for name, (b, t) in totals.items()}
    rows.append(Row("series retrieve MB/s", "MB/s", mbps[ours.name], mbps.get(peer_name or ""), True, 1.5))

    # 4. Series metadata, rotating over the series of the first study.
    st = studies[0]
    meta_cases = [metadata_case(st.uid, se.uid, len(se.files), "metadata") for se in st.series]
    print(f"metadata: {len(meta_cases)} series x {reps} reps ...", flush=True)
    meta = merge_cases(measure_latency(servers, meta_cases, reps // len(meta_cases) + 1), "series metadata (no gzip)")
    rows += latency_rows(meta, [named("series metadata (no gzip)")], ours.name, peer_name, {0.5: 0.25, 0.95: None})
    gz_cases = [metadata_case(st.uid, se.uid, len(se.files), "metadata gz", gzip_=True) for se in st.series]
    gz = merge_cases(measure_latency([ours], gz_cases, reps // len(gz_cases) + 1), "series metadata (gzip, ours)")
    rows += latency_rows(gz, [named("series metadata (gzip, ours)")], ours.name, None, {0.5: None, 0.95: None})

    # 5. Pixels: frames (as OHIF asks for them), rendered images, thumbnails.
    rows += measure_pixels(servers, studies[0], reps)

    # 6. The disk's durable rate, last (its 1.5 GB of writes would disturb the rows above),
    # shown under the STOW rows.
    sizes = [f.stat().st_size for s in studies for f in s.files]
    limit = machine_limit_rows(args, sizes, results, results4, peer if stow_peer else None)
    return rows[:stow_rows] + limit + rows[stow_rows:]


def machine_limit_rows(
    args: argparse.Namespace,
    sizes: list[int],
    results: dict[str, StowResult],
    results4: dict[str, StowResult],
    peer: Server | None,
) -> list[Row]:
    """The disk's durable rate for the corpus' files (same sizes, groups of 20), on the disk of
    the servers' data, and what share of it each server's STOW reached. Context rows: "ours"
    holds the disk's rate, "peer" is empty."""
    directory = Path(args.run_dir) / "disk-limit"
    rows: list[Row] = []
    limits = {}
    for writers, concurrent, label in (
        (1, False, "1 writer, fsync each file in turn"),
        (1, True, "1 writer, 20 fsyncs at once"),
        (4, True, "4 writers, 20 fsyncs at once"),
    ):
        print(f"machine limit: {label} ...", flush=True)
        limit = disk_limit(directory, sizes, writers, concurrent)
        limits[(writers, concurrent)] = limit.rate
        rows.append(Row(f"machine limit ({label}) inst/s", "inst/s", limit.rate))
        rows.append(Row(f"machine limit ({label}) MB/s", "MB/s", limit.mbps))
    best1, best4 = max(limits[(1, False)], limits[(1, True)]), limits[(4, True)]
    for label, res, best, target in (("1 client", results, best1, 2.0), ("4 clients", results4, best4, 3.0)):
        ours = res["ours"].rate / best * 100
        their = res[peer.name].rate / best * 100 if peer is not None and peer.name in res else None
        rows.append(Row(f"STOW {label}: share of the machine limit (%)", "%", ours, their, True))
        if their is not None:
            need = target * res[peer.name].rate / best * 100
            rows.append(Row(f"STOW {label}: {target:g}x the peer needs (% of the limit)", "%", need))
    return rows


#: p50 targets of the pixel rows (ours/peer), from the WADO-RS issue.
PIXEL_TARGETS = {"frame 1": 1.0, "frame 250": 1.0, "rendered JPEG": 1.0, "rendered PNG": 0.5}


def measure_pixels(servers: Sequence[Server], study: Study, reps: int) -> list[Row]:
    blob, multiframe = jpeg_multiframe()
    for server in servers:
        with server.connect() as conn:
            body = build_multipart([blob], BOUNDARY, part_length=False)
            validate_stow(conn.post(f"{server.prefix}/studies", body, {"Content-Type": STOW_TYPE, "Accept": JSON}), 1)
    ct = first_ct_instance(study.uid, study.series[0].uid, study.series[0].files[0])
    ours, peer = servers[0], (servers[1] if len(servers) > 1 else None)
    rows: list[Row] = []
    for name, target, headers, validate in pixel_requests(ct, multiframe):
        case = Case(name, target, lambda s, h=headers: h, _as_validation(validate))
        measured = list(servers)
        if peer is not None:
            with peer.connect() as conn:
                answer = conn.get(peer.prefix + target, headers)
            if answer.status != 200:  # e.g. /thumbnail, which the Orthanc plugin 1.7 lacks
                peer.notes.append(f"{peer.name} answers {answer.status} to {name}: ours only")
                measured = [ours]
        print(f"pixels: {name} x {reps} ...", flush=True)
        samples = measure_latency(measured, [case], reps)
        compared = peer.name if peer is not None and len(measured) > 1 else None
        target_ratio = next((t for prefix, t in PIXEL_TARGETS.items() if name.startswith(prefix)), None)
        targets = {0.5: target_ratio if compared else None, 0.95: None}
        rows += latency_rows(samples, [case], ours.name, compared, targets)
    return rows


def _as_validation(validate: Callable[[HttpResponse], None]) -> Callable[[HttpResponse], None]:
    def wrapped(resp: HttpResponse) -> None:
        try:
            validate(resp)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc

    return wrapped


def named(name: str) -> Case:
    return Case(name, "", lambda s: {}, lambda r: None)


def merge_cases(samples: dict[tuple[str, str], list[float]], name: str) -> dict[tuple[str, str], list[float]]:
    merged: dict[tuple[str, str], list[float]] = {}
    for (server, _), values in samples.items():
        merged.setdefault((server, name), []).extend(values)
    return merged


# --- scale mode ---------------------------------------------------------------------------------

SCALE_FAMILIES = [
    "PATCHWORK", "SMITH", "Patchett", "NGUYEN", "GARCIA", "DISPATCH", "MUELLER", "ROSSI", "KOWALSKI", "TANAKA",
    "OKAFOR", "SILVA", "JOHANSSON", "DUBOIS", "IVANOV", "CHEN", "MARTIN", "BROWN", "WILSON", "LOPEZ", "KIM",
    "SINGH", "MORALES", "FISCHER", "MOREAU", "NOVAK", "HANSEN", "PETROV", "SATO", "ADEYEMI", "COHEN", "OBRIEN",
]  # fmt: skip
SCALE_GIVEN = ["QUILT", "JOHN", "Anna", "LINH", "MARIA", "ROBIN", "HANS", "GIULIA", "PIOTR", "YUKI", "CHIDI", "ERIK"]
SCALE_MODALITIES = ["CT", "MR", "CR", "US", "DX", "MG"]
BIG_SERIES = 500
SCALE_BATCH = 100


def _h(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def scale_uid(*parts: object) -> str:
    return "2.25." + str(
        int.from_bytes(hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=15).digest(), "big")
    )


@dataclass(frozen=True)
class ScaleStudy:
    index: int
    patient_id: str
    patient_name: str
    date: str
    modality: str
    series_sizes: tuple[int, ...]


class ScalePlan:
    """Deterministic layout of N instances: study 0 holds one 500-instance series, then studies of
    1-4 series of 3-24 instances each; ~1.5 studies per patient; names, dates, modalities vary."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.studies: list[ScaleStudy] = []
        self.blocks: list[tuple[int, int, int]] = []  # (first instance, study, series) per series
        placed, s = 0, 0
        while placed < total:
            if s == 0:
                sizes: tuple[int, ...] = (min(BIG_SERIES, total),)
            else:
                sizes = tuple(3 + _h("n", s, r) % 22 for r in range(1 + _h("k", s) % 4))
            trimmed = []
            for size in sizes:
                size = min(size, total - placed)
                if size <= 0:
                    break
                self.blocks.append((placed, s, len(trimmed)))
                trimmed.append(size)
                placed += size
            p = s * 2 // 3
            family = SCALE_FAMILIES[p % len(SCALE_FAMILIES)] + ("" if p < len(SCALE_FAMILIES) else str(p // 97 % 10))
            h = _h("d", s)
            self.studies.append(ScaleStudy(
                s, f"SCL{p:07d}", f"{family}^{SCALE_GIVEN[_h('g', p) % len(SCALE_GIVEN)]}",
                f"{2010 + h % 15}{1 + h // 15 % 12:02d}{1 + h // 180 % 28:02d}",
                SCALE_MODALITIES[_h("m", s) % len(SCALE_MODALITIES)], tuple(trimmed),
            ))  # fmt: skip
            s += 1
        self._starts = [b[0] for b in self.blocks]

    def locate(self, i: int) -> tuple[int, int, int]:
        """Instance i -> (study, series, instance number within the series)."""
        k = bisect.bisect_right(self._starts, i) - 1
        first, study, series = self.blocks[k]
        return study, series, i - first

    def batches(self) -> int:
        return math.ceil(self.total / SCALE_BATCH)


def scale_instance(plan: ScalePlan, i: int) -> bytes:
    from pydicom import dcmwrite
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    s, r, n = plan.locate(i)
    st = plan.studies[s]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = scale_uid("sop", s, r, n)
    ds.StudyInstanceUID = scale_uid("study", s)
    ds.SeriesInstanceUID = scale_uid("series", s, r)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID = st.patient_name, st.patient_id
    ds.PatientBirthDate, ds.PatientSex = f"{1930 + _h('b', st.patient_id) % 70}0101", "MFO"[s % 3]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = st.date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = f"{8 + s % 10:02d}{s % 60:02d}00"
    ds.AccessionNumber, ds.StudyID = f"SA{s:08d}", str(s + 1)
    ds.StudyDescription = f"{st.modality} STUDY {s % 17}"
    ds.SeriesDescription = f"SERIES {r + 1}"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = st.modality, r + 1, n + 1
    ds.ReferringPhysicianName = ["DOE^JANE", "ROE^RICHARD", ""][s % 3]
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes((i + k) % 256 for k in range(128))
    ds["PixelData"].VR = "OW"
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _scale_worker(url: str, total: int, done_path: str | None, batches: list[int]) -> None:  # child process
    host, port, prefix = split_url(url)
    plan = ScalePlan(total)
    done = open(done_path, "a") if done_path else None  # noqa: SIM115 (kept open over the loop)
    try:
        with HttpConnection(host, port) as conn:
            for b in batches:
                payloads = [scale_instance(plan, i) for i in range(b * SCALE_BATCH, min(total, (b + 1) * SCALE_BATCH))]
                body = build_multipart(payloads, BOUNDARY)
                resp = conn.post(f"{prefix}/studies", body, {"Content-Type": STOW_TYPE, "Accept": JSON})
                validate_stow(resp, len(payloads))
                if done is not None:
                    done.write(f"{b}\n")
                    done.flush()
    finally:
        if done is not None:
            done.close()


def build_scale_archive(url: str, plan: ScalePlan, data_dir: Path, jobs: int, persistent: bool) -> None:
    done: set[int] = set()
    if persistent:
        for f in data_dir.glob("done-*.txt"):
            done |= {int(line) for line in f.read_text().split()}
    todo = [b for b in range(plan.batches()) if b not in done]
    if not todo:
        print(f"scale archive complete ({plan.total} instances), reusing it")
        return
    print(f"storing {len(todo)} batches of {SCALE_BATCH} ({len(done)} done before) with {jobs} clients ...", flush=True)
    ctx = mp.get_context("spawn")
    stamp = int(time.time())
    procs = []
    for k in range(jobs):
        done_file = str(data_dir / f"done-{stamp}-{k}.txt") if persistent else None
        procs.append(ctx.Process(target=_scale_worker, args=(url, plan.total, done_file, todo[k::jobs])))
    t0 = time.perf_counter()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - t0
    if any(p.exitcode for p in procs):
        raise SystemExit("a scale ingest worker failed (see above); rerun to resume")
    n = sum(min(plan.total, (b + 1) * SCALE_BATCH) - b * SCALE_BATCH for b in todo)
    print(f"stored {n} instances in {elapsed:.0f} s ({n / elapsed:.0f} instances/s, generation included)")


def scale_queries(plan: ScalePlan) -> list[Query]:
    studies = plan.studies
    one = studies[1]
    patient = sum(s.patient_id == one.patient_id for s in studies)
    patched = sum("patch" in s.patient_name.lower() for s in studies)
    in_range = sum("20200101" <= s.date <= "20221231" for s in studies)
    one_uid, series_uid = scale_uid("study", 1), scale_uid("series", 1, 0)
    return [
        Query("studies limit=25", "/studies?limit=25", min(25, len(studies)), True),
        Query("PatientID=<one>", f"/studies?PatientID={one.patient_id}", patient, True),
        Query("PatientName=*PATCH* limit=25", "/studies?PatientName=*PATCH*&limit=25", min(25, patched), True),
        Query("StudyDate=2020-2022 limit=25", "/studies?StudyDate=20200101-20221231&limit=25", min(25, in_range), True),
        Query("includefield=all limit=25", "/studies?includefield=all&limit=25", min(25, len(studies)), True),
        Query("series of a study", f"/studies/{one_uid}/series", len(one.series_sizes), False),
        Query("instances of a series", f"/studies/{one_uid}/series/{series_uid}/instances", one.series_sizes[0], False),
    ]  # fmt: skip


def analyze(backend: str) -> None:
    """After the bulk load, do what autovacuum would (it is off on this box's PostgreSQL): planner
    statistics, and on PostgreSQL a visibility map, without which index-only scans visit the heap."""
    if not backend.startswith(("postgresql", "mysql", "mariadb")):
        return
    import asyncio

    import sqlalchemy
    from sqlalchemy.ext.asyncio import create_async_engine

    postgres = backend.startswith("postgresql")
    url = sqlalchemy.make_url(backend).set(drivername="postgresql+asyncpg" if postgres else "mysql+asyncmy")

    async def run() -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            if postgres:
                await conn.execute(sqlalchemy.text("VACUUM ANALYZE"))
            else:
                for (table,) in (await conn.execute(sqlalchemy.text("SHOW TABLES LIKE 'dwk_%'"))).all():
                    await conn.execute(sqlalchemy.text(f"ANALYZE TABLE {table}"))
        await engine.dispose()

    asyncio.run(run())
    print("VACUUM/ANALYZE done", flush=True)


def run_scale(args: argparse.Namespace) -> int:
    total = args.scale
    data_dir = Path(args.scale_dir or f"/tmp/dwk-bench-scale-{total}")
    persistent = args.backend != "memory"
    data_dir.mkdir(parents=True, exist_ok=True)
    plan = ScalePlan(total)
    print(f"scale: {total} instances in {len(plan.studies)} studies, {len(plan.blocks)} series; data in {data_dir}")
    server = OurServer(args.backend, data_dir, args.port, args.workers)
    reps = args.reps or (20 if args.quick else 50)
    try:
        server.start()
        ours = Server("ours", server.url)
        build_scale_archive(server.url, plan, data_dir, args.scale_jobs, persistent)
        analyze(args.backend)
        probe_xml_accept(ours)
        cases = qido_cases(scale_queries(plan), at_least=False)
        print(f"QIDO: {len(cases)} queries x {reps} reps ...", flush=True)
        samples = measure_latency([ours], cases, reps)
        big = plan.studies[0].series_sizes[0]
        meta = [metadata_case(scale_uid("study", 0), scale_uid("series", 0, 0), big, f"metadata {big} instances")]
        meta_gz = [
            metadata_case(
                scale_uid("study", 0), scale_uid("series", 0, 0), big, f"metadata {big} instances, gzip", True
            )
        ]
        print(f"metadata: {reps} reps ...", flush=True)
        msamples = measure_latency([ours], meta, reps)
        gsamples = measure_latency([ours], meta_gz, reps)
    except ValidationError as exc:
        print(f"VALIDATION FAILED: {exc}\n{server.log_tail()}", file=sys.stderr)
        return 1
    finally:
        server.stop()
    rows = pooled_rows(samples, cases, "QIDO mix", "ours", None, 20.0, absolute=True)
    rows += latency_rows(samples, cases, "ours", None, {0.5: None, 0.95: 20.0}, absolute=True)
    rows += latency_rows(msamples, meta, "ours", None, {0.5: 30.0, 0.95: 30.0}, absolute=True)
    rows += latency_rows(gsamples, meta_gz, "ours", None, {0.5: None, 0.95: None})
    print()
    for note in ours.notes:
        print(f"note: {note}")
    print_table(rows, None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small corpus (5x2x20), fewer repetitions")
    parser.add_argument(
        "--backend", default="sqlite", help="our index: sqlite (default; + files), memory, or a database URL"
    )
    parser.add_argument("--peer-url", help="a running peer's DICOMweb root, e.g. http://127.0.0.1:8043/dicom-web")
    parser.add_argument(
        "--start-orthanc", action="store_true", help="start Orthanc (shared start.sh) on a fresh data dir as the peer"
    )
    parser.add_argument("--orthanc-port", type=int, help="port for --start-orthanc (default: a free one)")
    parser.add_argument("--port", type=int, help="port for our server (default: a free one)")
    parser.add_argument("--corpus", help="corpus dir (built with make_corpus.py if it has no manifest.json)")
    parser.add_argument(
        "--bench-dir", default=str(DEFAULT_BENCH_DIR), help="cache for corpora and run dirs (default %(default)s)"
    )
    parser.add_argument("--reps", type=int, help="repetitions per latency case (default 50; 15 with --quick)")
    parser.add_argument("--part-length", action="store_true", help="send Content-Length in every STOW part")
    parser.add_argument("--keep", action="store_true", help="keep the run's server data dirs")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of our server (default 1)")
    parser.add_argument("--scale", type=int, help="build an archive of N tiny instances on our server and measure it")
    parser.add_argument("--scale-dir", help="data dir for --scale (default /tmp/dwk-bench-scale-N; reused, resumable)")
    parser.add_argument("--scale-jobs", type=int, default=4, help="concurrent STOW clients for --scale (default 4)")
    args = parser.parse_args(argv)
    if args.start_orthanc and args.peer_url:
        parser.error("--start-orthanc and --peer-url are exclusive")
    return run_scale(args) if args.scale else run_compare(args)


if __name__ == "__main__":
    raise SystemExit(main())
