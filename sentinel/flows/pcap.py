"""Streaming reader for pcap, pcapng and gzip-compressed captures.

Hand-written with ``struct`` rather than scapy: scapy's full dissection costs ~130 µs per packet
and silently returns partial packets from damaged files (see the corpus SOURCES.md). Reading
captures is Sentinel's core, so the format handling lives here.

Formats (sources):

* pcap — https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcap/ : magic ``a1b2c3d4``
  (microseconds) or ``a1b23c4d`` (nanoseconds), either byte order; 24-byte global header,
  16-byte record headers.
* pcapng — https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcapng/ : Section Header Blocks of
  either byte order (several sections per file), Interface Description Blocks (per-interface
  link type, ``if_tsresol``, ``if_tsoffset``), Enhanced Packet Blocks, Simple Packet Blocks (no
  timestamp, no interface: interface 0 and the previous packet's timestamp, counted as
  ``spb_no_timestamp``), Obsolete Packet Blocks (skipped, counted), every other block (NRB, ISB,
  custom, DSB...) skipped and counted.
* gzip — detected by its magic ``1f 8b``; zstd is recognised and rejected with a clear error.

``CaptureReader`` yields ``(ts_ns, linktype, data, orig_len)``: UTC nanoseconds since the epoch,
the LINKTYPE_ number, the captured bytes (``bytes``), the original length on the wire (bytes).

Damage handling (never a silent partial packet): a file that cannot be read at all raises
``CaptureError`` when the reader is created; damage after valid packets stops the iteration and is
recorded in ``ReadStats`` (``truncated``, ``truncation_reason``); a record cut mid-packet is not
yielded. A record longer than ``max_record_bytes`` stops the file (no memory blow-up).
"""

from __future__ import annotations

import gzip
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, cast

from sentinel.errors import CaptureError

#: tshark's default upper bound on a record's captured length (bytes)
DEFAULT_MAX_RECORD = 262_144
#: a file's snaplen may raise the bound up to this many bytes
HARD_MAX_RECORD = 1_048_576
#: bytes read from the file at a time
CHUNK = 1 << 20

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

Packet = tuple[int, int, bytes, int]


@dataclass
class ReadStats:
    """What reading one or more captures produced.

    ``packets``/``bytes`` count yielded records and their captured bytes. ``truncated`` is set
    when a file stopped early because of damage (``truncation_reason`` says where and why; one
    note per damaged file in ``notes``). ``skipped_records`` counts pcapng blocks that carry no
    packet (NRB, ISB, custom, OPB...). ``anomalies`` counts odd but readable records by kind
    (``incl_gt_orig``, ``spb_no_timestamp``, ``ts_fraction_out_of_range``...). The decode-level
    counters (``not_ip``, ``malformed``, ``unsupported_linktype``, ``fragments_unmatched``, and
    ``tunnels``: decapsulations by kind) are filled by the flow reader
    (``sentinel.flows.read_flows``), and so is ``dns``: DNS responses seen and problems with
    them by kind (``sentinel.flows.dns``).
    """

    files: int = 0
    packets: int = 0
    bytes: int = 0
    truncated: bool = False
    truncation_reason: str | None = None
    skipped_records: int = 0
    anomalies: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    not_ip: int = 0
    malformed: int = 0
    unsupported_linktype: int = 0
    fragments_unmatched: int = 0
    tunnels: dict[str, int] = field(default_factory=dict)
    dns: dict[str, int] = field(default_factory=dict)
    #: ``time.perf_counter()`` seconds when the first capture was opened (``None``: none was);
    #: a rate measured from it leaves out start-up (imports, policy and database loading)
    opened_at: float | None = field(default=None, compare=False)

    def anomaly(self, kind: str, count: int = 1) -> None:
        """Count ``count`` anomalies of ``kind``."""
        self.anomalies[kind] = self.anomalies.get(kind, 0) + count

    def truncate(self, where: str, reason: str) -> None:
        """Record that a file stopped early at ``where`` because of ``reason``."""
        note = f"{where}: {reason}"
        self.truncated = True
        self.truncation_reason = (
            note if self.truncation_reason is None else f"{self.truncation_reason}; {note}"
        )
        self.notes.append(note)

    def merge(self, other: ReadStats) -> None:
        """Add ``other``'s counters into this one (several files read in one run)."""
        self.files += other.files
        self.packets += other.packets
        self.bytes += other.bytes
        self.skipped_records += other.skipped_records
        for kind, count in other.anomalies.items():
            self.anomaly(kind, count)
        for note in other.notes:
            self.truncate(*note.split(": ", 1))
        self.not_ip += other.not_ip
        self.malformed += other.malformed
        self.unsupported_linktype += other.unsupported_linktype
        self.fragments_unmatched += other.fragments_unmatched
        for kind, count in other.tunnels.items():
            self.tunnels[kind] = self.tunnels.get(kind, 0) + count
        for kind, count in other.dns.items():
            self.dns[kind] = self.dns.get(kind, 0) + count
        if other.opened_at is not None and (
            self.opened_at is None or other.opened_at < self.opened_at
        ):
            self.opened_at = other.opened_at


class _Source:
    """A byte stream read in large chunks; tracks the absolute offset for messages."""

    __slots__ = ("buf", "eof", "error", "fh", "offset", "pos", "read")

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        # read1 returns what one underlying read gives: a damaged gzip stream still yields the
        # data decompressed before the damage
        self.read = getattr(fh, "read1", fh.read)
        self.buf = b""
        self.pos = 0
        self.offset = 0  # absolute file offset of buf[0]
        self.eof = False
        self.error: str | None = None

    def fill(self, need: int) -> bool:
        """Make ``need`` bytes available at ``pos``; False at end of data (or read error)."""
        while len(self.buf) - self.pos < need:
            if self.eof:
                return False
            try:
                chunk = self.read(max(CHUNK, need))
            except (OSError, EOFError, zlib.error) as exc:
                self.error = f"read error: {exc}"
                chunk = b""
            if not chunk:
                self.eof = True
                return False
            self.offset += self.pos
            self.buf = self.buf[self.pos :] + chunk
            self.pos = 0
        return True

    @property
    def here(self) -> int:
        return self.offset + self.pos

    def remaining(self) -> int:
        return len(self.buf) - self.pos


def _open_raw(path: Path) -> BinaryIO:
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise CaptureError(f"{path}: cannot open capture: {exc.strerror or exc}") from exc
    return fh


class CaptureReader:
    """Iterate over the packets of one pcap/pcapng file (optionally gzip-compressed).

    ``CaptureReader(path)`` validates the file header and raises ``CaptureError`` when the file is
    not a readable capture (missing, empty, bad magic, truncated header, zstd). Iterating yields
    ``(ts_ns, linktype, data, orig_len)`` and fills ``stats``. Use as a context manager or call
    ``close()``.
    """

    def __init__(self, path: str | Path, *, max_record_bytes: int = DEFAULT_MAX_RECORD) -> None:
        self.path = Path(path)
        self.stats = ReadStats(files=1, opened_at=time.perf_counter())
        self._max_record = max_record_bytes
        raw = _open_raw(self.path)
        self._raw = raw
        head = raw.read(4)
        raw.seek(0)
        self._fh: IO[bytes] = raw
        if head[:2] == _GZIP_MAGIC:
            self._fh = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
        elif head == _ZSTD_MAGIC:
            self.close()
            raise CaptureError(
                f"{self.path}: zstd-compressed capture; decompress it first (zstd -d)"
            )
        self._src = _Source(self._fh)
        try:
            self._format, self._pcap_info = self._sniff()
        except CaptureError:
            self.close()
            raise

    # -- header -------------------------------------------------------------------------------

    def _sniff(self) -> tuple[str, tuple[str, int, int, int]]:
        src = self._src
        if not src.fill(4):
            if src.error:
                raise CaptureError(f"{self.path}: not a readable capture ({src.error})")
            if src.remaining() == 0:
                raise CaptureError(f"{self.path}: empty file (0 bytes), not a capture")
            raise CaptureError(f"{self.path}: too short to be a capture ({src.remaining()} bytes)")
        magic_le = struct.unpack_from("<I", src.buf, 0)[0]
        magic_be = struct.unpack_from(">I", src.buf, 0)[0]
        if magic_le == PCAPNG_SHB:
            if not src.fill(12) or bytes(src.buf[8:12]) not in (
                b"\x4d\x3c\x2b\x1a",
                b"\x1a\x2b\x3c\x4d",
            ):
                raise CaptureError(
                    f"{self.path}: truncated or invalid pcapng section header (byte-order magic)"
                )
            return "pcapng", ("<", 0, 0, 0)
        for endian, magic in (("<", magic_le), (">", magic_be)):
            if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
                if not src.fill(24):
                    raise CaptureError(
                        f"{self.path}: truncated pcap global header ({src.remaining()} of 24 bytes)"
                    )
                _m, major, _minor, _tz, _sig, snaplen, linktype = struct.unpack_from(
                    endian + "IHHiIII", src.buf, 0
                )
                if major != 2:
                    raise CaptureError(f"{self.path}: unsupported pcap version {major}")
                src.pos = 24
                mult = 1000 if magic == PCAP_MAGIC_US else 1
                return "pcap", (endian, mult, snaplen, linktype & 0x0FFFFFFF)
        raise CaptureError(
            f"{self.path}: not a pcap or pcapng file (magic {bytes(src.buf[:4]).hex()})"
        )

    # -- iteration ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Packet]:
        if self._format == "pcap":
            return self._iter_pcap()
        return self._iter_pcapng()

    def _limit(self, snaplen: int) -> int:
        return max(self._max_record, min(snaplen, HARD_MAX_RECORD))

    def _end(self, where: int, reason: str) -> None:
        src = self._src
        if src.error:
            reason = f"{reason} ({src.error})"
        self.stats.truncate(f"{self.path} @ byte {where}", reason)

    def _iter_pcap(self) -> Iterator[Packet]:
        endian, mult, snaplen, linktype = self._pcap_info
        limit = self._limit(snaplen)
        hdr = struct.Struct(endian + "IIII")
        unpack_from = hdr.unpack_from
        src = self._src
        stats = self.stats
        packets = 0
        nbytes = 0
        frac_max = 1_000_000 if mult == 1000 else 1_000_000_000
        try:
            while True:
                pos = src.pos
                buf = src.buf
                if len(buf) - pos < 16:
                    if not src.fill(16):
                        left = src.remaining()
                        if left:
                            self._end(
                                src.here,
                                f"incomplete record header at end of file ({left} of 16 bytes): "
                                "file cut short or trailing garbage",
                            )
                        elif src.error:
                            self._end(src.here, "cannot read further")
                        return
                    pos = src.pos
                    buf = src.buf
                sec, frac, incl, orig = unpack_from(buf, pos)
                if incl > limit:
                    self._end(
                        src.here,
                        f"record length {incl} exceeds the maximum of {limit} bytes; "
                        "file damaged, rest ignored",
                    )
                    return
                end = pos + 16 + incl
                if end > len(buf):
                    if not src.fill(16 + incl):
                        self._end(
                            src.here,
                            f"record cut mid-packet ({src.remaining() - 16} of {incl} bytes)",
                        )
                        return
                    pos = src.pos
                    buf = src.buf
                    end = pos + 16 + incl
                src.pos = end
                if incl > orig:
                    stats.anomaly("incl_gt_orig")
                if frac >= frac_max:
                    stats.anomaly("ts_fraction_out_of_range")
                packets += 1
                nbytes += incl
                yield sec * 1_000_000_000 + frac * mult, linktype, buf[pos + 16 : end], orig
        finally:
            stats.packets += packets
            stats.bytes += nbytes

    def _iter_pcapng(self) -> Iterator[Packet]:
        src = self._src
        stats = self.stats
        endian = "<"
        # per interface: (linktype, snaplen, units per second, offset seconds)
        interfaces: list[tuple[int, int, int, int]] = []
        last_ts = 0
        max_block = self._max_record + 65_536
        while True:
            if not src.fill(8):
                left = src.remaining()
                if left:
                    self._end(src.here, f"{left} trailing bytes, not a block header")
                elif src.error:
                    self._end(src.here, "cannot read further")
                return
            buf, pos = src.buf, src.pos
            btype_le = struct.unpack_from("<I", buf, pos)[0]
            if btype_le == PCAPNG_SHB:
                if not src.fill(12):
                    self._end(src.here, "section header block cut short")
                    return
                buf, pos = src.buf, src.pos
                bom = buf[pos + 8 : pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                else:
                    self._end(src.here, "section header with an invalid byte-order magic")
                    return
                interfaces = []
            btype, blen = struct.unpack_from(endian + "II", buf, pos)
            if blen < 12 or blen % 4 or blen > max_block:
                self._end(src.here, f"invalid block length {blen} (block type {btype:#x})")
                return
            if not src.fill(blen):
                self._end(src.here, f"block cut short ({src.remaining()} of {blen} bytes)")
                return
            buf, pos = src.buf, src.pos
            trailer = struct.unpack_from(endian + "I", buf, pos + blen - 4)[0]
            if trailer != blen:
                self._end(src.here, f"block length mismatch ({blen} vs trailer {trailer})")
                return
            src.pos = pos + blen
            body = pos + 8
            body_end = pos + blen - 4
            if btype == 6:  # Enhanced Packet Block
                if blen < 32:
                    self._end(src.here - blen, "enhanced packet block too short")
                    return
                if_id, ts_hi, ts_lo, caplen, orig = struct.unpack_from(endian + "IIIII", buf, body)
                data_start = body + 20
                if data_start + caplen > body_end:
                    self._end(src.here - blen, "captured length runs past the block end")
                    return
                if if_id >= len(interfaces):
                    stats.anomaly("unknown_interface")
                    stats.skipped_records += 1
                    continue
                linktype, _snap, units, offset = interfaces[if_id]
                raw_ts = (ts_hi << 32) | ts_lo
                if units == 1_000_000_000:
                    ts = raw_ts
                elif units == 1_000_000:
                    ts = raw_ts * 1000
                else:
                    ts = raw_ts * 1_000_000_000 // units
                ts += offset * 1_000_000_000
                if caplen > orig:
                    stats.anomaly("incl_gt_orig")
                last_ts = ts
                stats.packets += 1
                stats.bytes += caplen
                yield ts, linktype, buf[data_start : data_start + caplen], orig
            elif btype == 3:  # Simple Packet Block
                if not interfaces:
                    stats.anomaly("unknown_interface")
                    stats.skipped_records += 1
                    continue
                orig = struct.unpack_from(endian + "I", buf, body)[0]
                linktype, snap, _units, _offset = interfaces[0]
                caplen = min(orig, body_end - body - 4)
                if snap:
                    caplen = min(caplen, snap)
                stats.anomaly("spb_no_timestamp")
                stats.packets += 1
                stats.bytes += caplen
                yield last_ts, linktype, buf[body + 4 : body + 4 + caplen], orig
            elif btype == 1:  # Interface Description Block
                if blen < 20:
                    self._end(src.here - blen, "interface description block too short")
                    return
                linktype, _res, snaplen = struct.unpack_from(endian + "HHI", buf, body)
                units, offset = _idb_options(buf, body + 8, body_end, endian)
                interfaces.append((linktype, snaplen, units, offset))
            elif btype == PCAPNG_SHB:
                continue
            else:  # NRB, ISB, OPB, custom, DSB, ...: no packet for us
                stats.skipped_records += 1

    def close(self) -> None:
        """Close the file (safe to call twice)."""
        if self._fh is not self._raw:
            self._fh.close()
        self._raw.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _idb_options(buf: bytes, pos: int, end: int, endian: str) -> tuple[int, int]:
    """``(units per second, offset seconds)`` from an IDB's options (``if_tsresol`` = 9,
    ``if_tsoffset`` = 14); defaults 10^6 and 0."""
    units = 1_000_000
    offset = 0
    while pos + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, pos)
        value = pos + 4
        if code == 0:
            break
        if value + length > end:
            break
        if code == 9 and length >= 1:
            res = buf[value]
            exp = res & 0x7F
            if exp <= 30:  # larger resolutions are not meaningful; keep the default
                units = (2**exp) if res & 0x80 else (10**exp)
        elif code == 14 and length >= 8:
            offset = struct.unpack_from(endian + "q", buf, value)[0]
        pos = value + ((length + 3) & ~3)
    return units, offset


def read_packets(path: str | Path, stats: ReadStats | None = None) -> Iterator[Packet]:
    """Yield ``(ts_ns, linktype, data, orig_len)`` from ``path``; merge counters into ``stats``.

    Raises ``CaptureError`` (before the first packet) when the file is not readable.
    """
    with CaptureReader(path) as reader:
        try:
            yield from reader
        finally:
            if stats is not None:
                stats.merge(reader.stats)
