"""Read an APK's ZIP structure the way Android's verifier (apksig) does, with caps.

Python's ``zipfile`` is lenient where Android is strict (it does not compare the local header
with the central directory) and strict where Android is lenient (it refuses encrypted entries
and unknown methods, checks CRC-32s), and it raises a zoo of exceptions. This reader follows
apksig's ``ZipUtils``, ``CentralDirectoryRecord`` and ``LocalFileRecord`` instead, so that
Depot's verdict on an APK is apksigner's:

* **End of central directory**: the last ``PK\\5\\6`` record whose comment length reaches
  exactly to the end of the file (a record with an empty comment is tried first). Its central
  directory offset and size must lie before it; they need not reach it (apksig allows a gap,
  for instance a Zip64 end record, but then looks for no APK Signing Block). Zip64 is not read:
  0xFFFFFFFF offsets and sizes are taken literally, and then fail these checks, as on Android.
* **Central directory**: exactly as many records as the end record's total count (a lower
  count leaves the last records unread, a higher one runs into garbage and fails), each with
  its signature, inside the recorded size. Names are UTF-8, malformed bytes read as U+FFFD
  (as Java's decoder does), never an exception. Directory entries (``.../``) are skipped.
* **Local header** of every entry that is read: within the archive before the central
  directory, its signature, the same data-descriptor flag as the central record, and without a
  data descriptor the same CRC-32, compressed and uncompressed size; the same name. The CRC-32
  itself is not checked against the data (Android does not either). The encryption flag and
  "version needed" are not looked at, as on Android's verifier.
* **Data**: method 0 is stored (the data is the uncompressed size long); any other method is
  read as raw DEFLATE (``compressed size`` long), and the inflated length must equal the
  central directory's uncompressed size. So a bzip2 or LZMA entry fails to inflate, and a
  "method 12" entry whose bytes are really deflated reads, exactly as apksig reads it.

On top of apksig the reader is bounded: an entry read into memory has a cap chosen by the
caller, inflating stops as soon as the output runs past what the record declares, and one
archive may inflate at most :data:`inflate_budget` bytes in total (a ZIP bomb of many entries).
Every failure is an :class:`ApkFormatError` or :class:`ApkLimitError`.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.portal.errors import ApkFormatError, ApkLimitError

EOCD_MAGIC = b"PK\x05\x06"
EOCD_SIZE = 22
CD_MAGIC = b"PK\x01\x02"
LFH_MAGIC = b"PK\x03\x04"
CD_HEADER = 46
LFH_HEADER = 30
FLAG_DATA_DESCRIPTOR = 0x08
METHOD_STORED = 0
READ_CHUNK = 1 << 16

# One archive inflates at most this much in total, whatever it declares: enough for any real
# APK (the signature check reads every entry once), bounded for a bomb of many small entries.
INFLATE_FLOOR = 1 << 30  # 1 GiB
INFLATE_RATIO = 32  # ... or 32 times the file's size, whichever is more

Buffer = bytes | mmap.mmap


@dataclass(frozen=True)
class CdEntry:
    """One central directory record, as apksig keeps it."""

    name: str
    name_size: int
    flags: int
    method: int
    crc32: int
    compressed_size: int
    uncompressed_size: int
    local_offset: int
    index: int  # position in the central directory

    @property
    def compressed(self) -> bool:
        return self.method != METHOD_STORED


class ApkZip:
    """An APK's ZIP sections and central directory; entries are read on demand."""

    def __init__(self, data: Buffer, inflate_budget: int | None = None) -> None:
        self.data = data
        self.size = len(data)
        self.inflate_budget = (
            inflate_budget if inflate_budget is not None else max(INFLATE_FLOOR, INFLATE_RATIO * self.size)
        )
        self.inflated = 0
        eocd = find_eocd(data)
        if eocd is None:
            raise ApkFormatError("Malformed APK: not a ZIP archive (no end of central directory record)")
        self.eocd_offset = eocd
        count, cd_size, cd_offset = struct.unpack_from("<HII", data, eocd + 10)
        if cd_offset > eocd:
            raise ApkFormatError(
                f"Malformed APK: not a ZIP archive (central directory offset {cd_offset} is past "
                f"the end record at {eocd})"
            )
        if cd_offset + cd_size > eocd:
            raise ApkFormatError(
                "Malformed APK: not a ZIP archive (the central directory overlaps the end record)"
            )
        self.cd_offset = cd_offset
        self.cd_size = cd_size
        self.record_count = count
        self._entries: list[CdEntry] | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path) -> Iterator[ApkZip]:
        """The APK at ``path``, memory-mapped (an empty file is not a ZIP)."""
        with path.open("rb") as f:
            if path.stat().st_size == 0:
                raise ApkFormatError("Malformed APK: not a ZIP archive (empty file)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                yield cls(data)

    @property
    def cd_followed_by_eocd(self) -> bool:
        return self.cd_offset + self.cd_size == self.eocd_offset

    @property
    def eocd(self) -> bytes:
        return bytes(self.data[self.eocd_offset :])

    @property
    def entries(self) -> list[CdEntry]:
        """The central directory's file entries (directories skipped), in directory order."""
        if self._entries is None:
            self._entries = parse_central_directory(
                self.data, self.cd_offset, self.cd_size, self.record_count
            )
        return self._entries

    def find(self, name: str) -> CdEntry | None:
        """The first entry named exactly ``name``."""
        return next((e for e in self.entries if e.name == name), None)

    def read(self, entry: CdEntry, limit: int, what: str | None = None) -> bytes:
        """The uncompressed bytes of ``entry``; ApkLimitError when it declares more than ``limit``."""
        if entry.uncompressed_size > limit:
            raise ApkLimitError(
                f"{what or entry.name} is {entry.uncompressed_size} bytes uncompressed; "
                f"the store reads at most {limit}"
            )
        parts: list[bytes] = []
        self.stream(entry, parts.append)
        return b"".join(parts)

    def stream(self, entry: CdEntry, sink: Callable[[bytes], object]) -> None:
        """Feed the uncompressed bytes of ``entry`` to ``sink`` in chunks of at most 64 KiB."""
        start, size = local_data(self.data, entry, self.cd_offset)
        if not entry.compressed:
            for pos in range(start, start + size, READ_CHUNK):
                sink(bytes(self.data[pos : min(pos + READ_CHUNK, start + size)]))
            return
        expected = entry.uncompressed_size
        if self.inflated + expected > self.inflate_budget:
            raise ApkLimitError(
                f"the APK inflates to more than {self.inflate_budget} bytes in total; "
                "the store does not read it"
            )
        inflater = zlib.decompressobj(-15)
        produced = 0
        pos, end = start, start + size
        try:
            while pos < end and not inflater.eof:
                chunk = bytes(self.data[pos : min(pos + READ_CHUNK, end)])
                pos += len(chunk)
                while chunk and not inflater.eof:
                    out = inflater.decompress(chunk, READ_CHUNK)
                    chunk = inflater.unconsumed_tail
                    if out:
                        produced += len(out)
                        if produced > expected:
                            raise ApkFormatError(
                                f"Malformed ZIP entry: {entry.name} inflates to more than the "
                                f"{expected} bytes its record declares"
                            )
                        sink(out)
                    elif chunk:  # no progress with input left: cannot happen, but never loop
                        break
        except zlib.error as exc:
            raise ApkFormatError(f"Malformed ZIP entry: data of {entry.name} malformed ({exc})") from None
        finally:
            self.inflated += produced
        if produced != expected:
            raise ApkFormatError(
                f"Malformed ZIP entry: unexpected size of uncompressed data of {entry.name}. "
                f"Expected: {expected} bytes, actual: {produced} bytes"
            )


def find_eocd(data: Buffer) -> int | None:
    """Offset of the end of central directory record, found as apksig finds it: the record
    nearest to the end of the file whose comment length reaches exactly to the end."""
    size = len(data)
    if size < EOCD_SIZE:
        return None
    lowest = size - EOCD_SIZE - min(0xFFFF, size - EOCD_SIZE)
    highest = size - EOCD_SIZE
    while highest >= lowest:
        pos = data.rfind(EOCD_MAGIC, lowest, highest + 4)
        if pos < 0:
            return None
        if struct.unpack_from("<H", data, pos + 20)[0] == size - EOCD_SIZE - pos:
            return pos
        highest = pos - 1
    return None


def decode_name(raw: bytes) -> str:
    """A ZIP entry name as Java decodes it: UTF-8, malformed bytes replaced by U+FFFD."""
    return raw.decode("utf-8", errors="replace")


def parse_central_directory(data: Buffer, cd_offset: int, cd_size: int, count: int) -> list[CdEntry]:
    cd = bytes(data[cd_offset : cd_offset + cd_size])
    pos = 0
    entries = []
    for index in range(count):
        where = f"Malformed ZIP Central Directory record #{index + 1} at file offset {cd_offset + pos}"
        if len(cd) - pos < CD_HEADER:
            raise ApkFormatError(f"{where}: input too short")
        if cd[pos : pos + 4] != CD_MAGIC:
            raise ApkFormatError(f"{where}: not a Central Directory record")
        flags, method = struct.unpack_from("<HH", cd, pos + 8)
        crc, csize, usize, n, e, c = struct.unpack_from("<IIIHHH", cd, pos + 16)
        (local,) = struct.unpack_from("<I", cd, pos + 42)
        record = CD_HEADER + n + e + c
        if record > len(cd) - pos:
            raise ApkFormatError(f"{where}: input too short")
        name = decode_name(cd[pos + CD_HEADER : pos + CD_HEADER + n])
        pos += record
        if name.endswith("/"):
            continue
        entries.append(CdEntry(name, n, flags, method, crc, csize, usize, local, index))
    return entries


def local_data(data: Buffer, entry: CdEntry, cd_offset: int) -> tuple[int, int]:
    """(offset, length) of ``entry``'s data after apksig's local-header checks."""
    name = entry.name
    start = entry.local_offset
    if start + LFH_HEADER + entry.name_size > cd_offset:
        raise ApkFormatError(
            f"Malformed ZIP entry: the local file header of {name} extends beyond the central directory"
        )
    if data[start : start + 4] != LFH_MAGIC:
        raise ApkFormatError(f"Malformed ZIP entry: no local file header for {name}")
    (flags,) = struct.unpack_from("<H", data, start + 6)
    descriptor = bool(flags & FLAG_DATA_DESCRIPTOR)
    if descriptor != bool(entry.flags & FLAG_DATA_DESCRIPTOR):
        raise ApkFormatError(
            f"Malformed ZIP entry: data descriptor presence differs between the local file header "
            f"and the central directory for {name}"
        )
    crc, csize, usize, n, e = struct.unpack_from("<IIIHH", data, start + 14)
    if not descriptor:
        for field, local, central in (
            ("CRC-32", crc, entry.crc32),
            ("compressed size", csize, entry.compressed_size),
            ("uncompressed size", usize, entry.uncompressed_size),
        ):
            if local != central:
                raise ApkFormatError(
                    f"Malformed ZIP entry: {field} mismatch between the local file header and the "
                    f"central directory for {name}. LFH: {local}, CD: {central}"
                )
    if n > entry.name_size:
        raise ApkFormatError(
            f"Malformed ZIP entry: name mismatch between the local file header and the "
            f"central directory for {name}"
        )
    local_name = decode_name(bytes(data[start + LFH_HEADER : start + LFH_HEADER + n]))
    if local_name != name:
        raise ApkFormatError(
            f"Malformed ZIP entry: name mismatch between the local file header ({local_name!r}) and "
            f"the central directory ({name!r})"
        )
    data_start = start + LFH_HEADER + n + e
    size = entry.compressed_size if entry.compressed else entry.uncompressed_size
    if data_start + size > cd_offset:
        raise ApkFormatError(f"Malformed ZIP entry: the data of {name} overlaps the central directory")
    return data_start, size
