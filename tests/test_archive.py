"""Raw archive: round trip, idempotence, corruption, concurrent writers."""

from __future__ import annotations

import gzip
import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from pipeline.acquire.archive import ObjectCorrupt, ObjectMissing, RawArchive, content_hash
from pipeline.errors import StateError

BODY = b"<html><body><h1>Osteotomy of spine</h1>" + b"<p>Summary text.</p>" * 200 + b"</html>"
DIGEST = hashlib.sha256(BODY).hexdigest()


def test_round_trip_and_layout(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path)
    digest = archive.put(BODY, content_type="text/html; charset=utf-8", url="https://e.org/a")
    assert digest == DIGEST == content_hash(BODY)
    path = tmp_path / "objects" / DIGEST[:2] / f"{DIGEST}.gz"
    assert archive.path_of(digest) == path
    assert gzip.decompress(path.read_bytes()) == BODY  # plain gzip: zcat works
    assert path.stat().st_size < len(BODY) / 5
    assert archive.has(digest)
    assert archive.get(digest) == BODY
    meta = archive.meta(digest)
    assert meta is not None
    assert (meta.sha256, meta.size, meta.content_type, meta.url) == (
        DIGEST,
        len(BODY),
        "text/html; charset=utf-8",
        "https://e.org/a",
    )


def test_empty_body(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path)
    assert archive.get(archive.put(b"")) == b""


def test_put_is_idempotent_and_the_first_metadata_wins(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path)
    archive.put(BODY, content_type="text/html; charset=windows-1252", url="https://e.org/first")
    path = archive.path_of(DIGEST)
    before = (path.stat().st_ino, path.stat().st_mtime_ns)
    assert archive.put(BODY, content_type="text/plain", url="https://e.org/second") == DIGEST
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == before  # not rewritten
    meta = archive.meta(DIGEST)
    assert meta is not None
    assert (meta.content_type, meta.url) == (
        "text/html; charset=windows-1252",
        "https://e.org/first",
    )
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{DIGEST}.gz", f"{DIGEST}.json"]


def test_missing_sidecar_is_written_on_the_next_put(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path)
    archive.put(BODY)
    archive.path_of(DIGEST).with_suffix(".json").unlink()  # killed between object and sidecar
    assert archive.meta(DIGEST) is None
    archive.put(BODY, content_type="text/html")
    meta = archive.meta(DIGEST)
    assert meta is not None
    assert meta.content_type == "text/html"


def test_equal_bodies_give_identical_objects(tmp_path: Path) -> None:
    one, two = RawArchive(tmp_path / "one"), RawArchive(tmp_path / "two")
    one.put(BODY)
    time.sleep(0.01)
    two.put(BODY)
    assert one.path_of(DIGEST).read_bytes() == two.path_of(DIGEST).read_bytes()


def test_missing_object(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path)
    assert not archive.has(DIGEST)
    with pytest.raises(ObjectMissing, match=DIGEST):
        archive.get(DIGEST)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"garbage" + data,  # not gzip
        lambda data: gzip.compress(b"other bytes"),  # decompresses, wrong hash
    ],
    ids=["truncated", "not-gzip", "wrong-content"],
)
def test_corrupt_object_is_detected(tmp_path: Path, damage: object) -> None:
    archive = RawArchive(tmp_path)
    archive.put(BODY)
    path = archive.path_of(DIGEST)
    assert callable(damage)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ObjectCorrupt, match=DIGEST) as caught:
        archive.get(DIGEST)
    assert isinstance(caught.value, StateError)


@pytest.mark.parametrize("digest", ["../../etc/passwd", "A" * 64, "ab", DIGEST + "0"])
def test_only_sha256_digests_are_accepted(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        RawArchive(tmp_path).get(digest)


def _put_many(root: str) -> list[str]:
    archive = RawArchive(root)
    return [archive.put(BODY, content_type="text/html") for _ in range(20)]


def test_concurrent_puts_of_the_same_object_are_safe(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=8) as threads:
        results = [d for ds in threads.map(_put_many, [str(tmp_path)] * 8) for d in ds]
    with ProcessPoolExecutor(max_workers=3) as processes:
        results += [d for ds in processes.map(_put_many, [str(tmp_path)] * 3) for d in ds]
    assert set(results) == {DIGEST}
    archive = RawArchive(tmp_path)
    assert archive.get(DIGEST) == BODY
    leftovers = [p.name for p in archive.path_of(DIGEST).parent.iterdir()]
    assert sorted(leftovers) == [f"{DIGEST}.gz", f"{DIGEST}.json"]  # no temporary files


def test_stale_temporary_files_are_swept(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path)
    archive.put(BODY)
    directory = archive.path_of(DIGEST).parent
    stale, fresh = directory / ".tmp-stale", directory / ".tmp-fresh"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"in progress")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert archive.remove_stale_temp(older_than=3600) == 1
    assert not stale.exists()
    assert fresh.exists()
    assert archive.get(DIGEST) == BODY


def test_an_archive_that_is_a_file_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "archive").write_bytes(b"not a directory")
    with pytest.raises(StateError, match="not a directory"):
        RawArchive.open(tmp_path / "archive")


def test_an_archive_that_cannot_be_written_is_a_state_error(tmp_path: Path) -> None:
    archive = RawArchive.open(tmp_path / "archive")
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "objects").write_bytes(b"")  # every write below it fails
    with pytest.raises(StateError, match="cannot write the raw archive"):
        archive.put(b"<p>page</p>")


def test_an_object_that_cannot_be_read_is_missing_not_a_crash(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path / "archive")
    digest = archive.put(b"<p>page</p>")
    path = archive.path_of(digest)
    path.unlink()
    path.mkdir()  # a directory where the object should be: IsADirectoryError
    with pytest.raises(ObjectMissing, match="cannot be read"):
        archive.get(digest)


def test_discarding_an_object_whose_shard_is_a_file_is_not_a_crash(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path / "archive")
    digest = archive.put(b"<p>page</p>")
    shard = archive.path_of(digest).parent
    for child in shard.iterdir():
        child.unlink()
    shard.rmdir()
    shard.write_bytes(b"x")  # a file where the shard directory was
    with pytest.raises(ObjectMissing):
        archive.get(digest)
    archive.discard(digest)  # nothing to remove, and no NotADirectoryError
