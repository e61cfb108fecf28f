"""The APK reader is bounded: MANIFEST.MF bombs, inflate bombs and oversized entries are parsed
in linear time or refused by a cap, in bounded memory, always with an ApkError.

Before, a META-INF/MANIFEST.MF of 29 KB of continuation lines cost 86 s of CPU and one of 8.7 KB
389 MiB of memory (each continuation line appended to the value again), before the CI token's
scope was even looked at. Memory is measured with tracemalloc's peak; time is only bounded
loosely (the machine is shared), the point being seconds instead of minutes.
"""

from __future__ import annotations

import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.portal import jarmanifest
from builder.portal.apk import ApkError, inspect_apk
from builder.portal.errors import ApkFormatError, ApkLimitError
from builder.portal.zipfmt import ApkZip
from tests.support.apk_factory import build_apk, compile_manifest
from tests.support.apk_mutants import Entry, jar_sign, seeded_key, view, write_zip

MAX_PEAK = 20 * 1024 * 1024
MAX_SECONDS = 5.0
MAIN = b"Manifest-Version: 1.0\r\nCreated-By: bomb\r\n\r\n"


def apk_with_manifest_mf(manifest_mf: bytes, **entry: object) -> bytes:
    """A v1-signed APK whose META-INF/MANIFEST.MF is then replaced by ``manifest_mf``."""
    files = {b"AndroidManifest.xml": compile_manifest("com.example.bomb", 1), b"classes.dex": b"dex\n035\0"}
    signed = jar_sign(files, seeded_key("depot-limits", "ec", "Depot Limits"))
    signed[b"META-INF/MANIFEST.MF"] = manifest_mf
    return write_zip(
        [Entry(n, c, **entry) if n == b"META-INF/MANIFEST.MF" else Entry(n, c) for n, c in signed.items()]  # type: ignore[arg-type]
    )


def measured(run: Callable[[], object]) -> tuple[BaseException | None, float, int]:
    """(the exception ``run`` raised, seconds, tracemalloc peak in bytes)."""
    tracemalloc.start()
    started = time.monotonic()
    raised: BaseException | None = None
    try:
        run()
    except Exception as exc:
        raised = exc
    finally:
        seconds = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return raised, seconds, peak


BOMBS = {
    # the shapes of the two reported bombs, and bigger: one attribute continued line after line
    "continuations-8.7k": MAIN + b"Name: classes.dex\r\nX-Bomb: a\r\n" + b" \r\n" * 4_400,
    "continuations-30k": MAIN + b"Name: classes.dex\r\nX-Bomb: a\r\n" + b" b\r\n" * 10_000,
    "continuations-past-the-line-cap": MAIN
    + b"X-Bomb: a\r\n"
    + b" "
    + (b"y" * 70 + b"\r\n ") * 2_000
    + b"z\r\n",
    "one-long-line": MAIN + b"X-Bomb: " + b"a" * 300_000 + b"\r\n",
    "a-million-lines": b"\r\n" * 1_100_000,
    "more-sections-than-entries": MAIN + b"Name: x\r\n\r\n" * 50_000,
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_manifest_mf_bombs_are_refused_fast_in_bounded_memory(name: str, tmp_path: Path) -> None:
    path = tmp_path / "bomb.apk"
    path.write_bytes(apk_with_manifest_mf(BOMBS[name]))
    raised, seconds, peak = measured(lambda: inspect_apk(path))
    assert isinstance(raised, ApkError), raised
    assert seconds < MAX_SECONDS, seconds
    assert peak < MAX_PEAK, f"{peak / 2**20:.1f} MiB"


def test_continuation_lines_are_joined_once_and_kept_exactly() -> None:
    data = MAIN + b"Name: a-very-long-na\r\n me.txt\r\nSHA-256-Digest: AAA\r\n BBB\r\n\r\n"
    manifest = jarmanifest.parse(data, max_sections=10)
    [section] = manifest.named
    assert section.name == "a-very-long-name.txt"
    assert section.get("sha-256-digest") == "AAABBB"
    assert data[section.start : section.start + section.size].startswith(b"Name: a-very")
    assert section.start + section.size == len(data)
    raised, seconds, peak = measured(
        lambda: jarmanifest.parse(MAIN + b"Name: x\r\nX: a\r\n" + b" b\r\n" * 40_000, max_sections=10)
    )
    assert raised is None and seconds < MAX_SECONDS and peak < MAX_PEAK


def test_a_manifest_mf_declared_larger_than_the_cap_is_not_inflated(tmp_path: Path) -> None:
    path = tmp_path / "big.apk"
    path.write_bytes(apk_with_manifest_mf(MAIN + b"\0" * (17 * 1024 * 1024)))  # deflates to ~17 KB
    raised, seconds, peak = measured(lambda: inspect_apk(path))
    assert isinstance(raised, ApkLimitError), raised
    assert raised.code == "apk_limit_exceeded" and "META-INF/MANIFEST.MF" in str(raised)
    assert seconds < MAX_SECONDS and peak < MAX_PEAK


def test_inflating_stops_where_the_record_says_the_entry_ends(tmp_path: Path) -> None:
    """An entry that inflates to far more than its declared size: refused after the first chunk."""
    zeros = MAIN + b"\0" * (64 * 1024 * 1024)
    data = bytearray(apk_with_manifest_mf(zeros))
    # declare 1000 bytes (local header and central directory agree, so only the data is wrong)
    found = view(bytes(data))
    assert found is not None
    [record] = [r for r in found.records if r.name == b"META-INF/MANIFEST.MF"]
    data[record.cd + 24 : record.cd + 28] = (1000).to_bytes(4, "little")
    data[record.lfh + 22 : record.lfh + 26] = (1000).to_bytes(4, "little")
    path = tmp_path / "inflate-bomb.apk"
    path.write_bytes(bytes(data))
    raised, seconds, peak = measured(lambda: inspect_apk(path))
    assert isinstance(raised, ApkFormatError), raised
    assert "more than the 1000 bytes" in str(raised)
    assert seconds < MAX_SECONDS and peak < MAX_PEAK


def test_an_android_manifest_over_its_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge-manifest.apk"
    path.write_bytes(write_zip([Entry(b"AndroidManifest.xml", b"\0" * (5 * 1024 * 1024))]))
    with pytest.raises(ApkError) as caught:
        inspect_apk(path)
    assert caught.value.code == "apk_limit_exceeded"


def test_one_archive_inflates_at_most_its_budget() -> None:
    content = b"x" * 100_000
    data = write_zip([Entry(b"a", content), Entry(b"b", content)])
    apk = ApkZip(data, inflate_budget=150_000)
    assert apk.read(apk.entries[0], 1 << 20) == content
    with pytest.raises(ApkLimitError):
        apk.read(apk.entries[1], 1 << 20)
    assert zlib.crc32(content)  # the data itself was fine


@pytest.mark.parametrize("code", ["²", "1" * 5000, "١٢٣", "12a"])
def test_a_version_code_no_android_parser_reads_is_an_apk_error(code: str, tmp_path: Path) -> None:
    """ "²".isdigit() is True and int() refuses it; 5,000 digits pass isdigit() and int() refuses
    them too: both were a 500 at upload."""
    path = tmp_path / "odd.apk"
    path.write_bytes(build_apk(version_code=code))  # type: ignore[arg-type]
    with pytest.raises(ApkError) as refused:
        inspect_apk(path)
    assert refused.value.code == "apk_malformed" and "versionCode" in str(refused.value)
