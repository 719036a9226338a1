"""Type stub of the compiled accelerator (sentinel/_ledgerscan.c; see sentinel.ledgerscan)."""

from collections.abc import Sequence

def scan_sqlite(
    path: str,
    log_id: str,
    log_json: bytes,
    version: int,
    lo: int,
    hi: int,
    block: int,
    stops: Sequence[int],
    /,
) -> (
    tuple[
        int,
        bytes,
        bytes,
        list[tuple[int, int, bytes]],
        list[tuple[int, list[tuple[int, int, bytes]]]],
    ]
    | None
): ...
def json_string(text: bytes, /) -> bytes | None: ...
