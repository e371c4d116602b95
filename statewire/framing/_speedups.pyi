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
