from typing import Any

def cut_prefixed(
    src: bytes,
    pos: int,
    length_offset: int,
    width: int,
    big: bool,
    adjust: int,
    max_length: int,
    max_frames: int,
) -> tuple[list[bytes], int]: ...
def cut_netstring(
    src: bytes, pos: int, max_length: int, max_frames: int
) -> tuple[list[bytes], int]: ...
def cut_lines(
    src: bytes, pos: int, delimiter: bytes, max_length: int, max_frames: int
) -> tuple[list[bytes], int]: ...
def cut_resp(
    src: bytes,
    pos: int,
    max_bulk: int,
    max_array: int,
    max_inline: int,
    max_frames: int,
    frames: list[Any],
    ends: list[int],
) -> int: ...
def one_resp(
    src: bytes, pos: int, max_bulk: int, max_array: int, max_inline: int
) -> tuple[list[bytes], int] | None: ...
