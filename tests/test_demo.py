"""The README's main job: the demo frames its stream and reports the oversize line."""

from __future__ import annotations

import io
import subprocess
import sys

from statewire import demo


def test_demo_frames_the_mixed_line_and_block_stream() -> None:
    out = io.StringIO()
    frames = demo.run(out)
    assert frames == [
        b"set greeting 5",
        b"hello\r\n",
        b"set blob 12",
        b"with\r\nCRLF!!\r\n",
        b"get greeting",
        b"set big 4",
        b"spam\r\n",
    ]
    assert "refused: line longer than 64 bytes" in out.getvalue()


def test_demo_frames_are_the_same_for_any_read_sizes() -> None:
    assert all(demo.run(io.StringIO(), seed=seed) == demo.run(io.StringIO()) for seed in range(20))


def test_command_line_runs_the_demo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "statewire", "demo"], capture_output=True, text=True, check=True
    )
    assert "7 frames" in done.stdout
