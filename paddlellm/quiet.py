"""Keeping Paddle's known, harmless C++ log lines (glog, written to file descriptor 2) away from users."""
import os
import sys
import tempfile
from contextlib import contextmanager


class Held:
    """What a file descriptor got inside `holding` (bytes, set on exit)."""
    data = b""


@contextmanager
def holding(fd):
    """Hold what is written to file descriptor `fd` (C++ output included) in the block; yields a Held whose
    .data has it once the block ends (also when it raises). Nothing is passed on: see pass_on."""
    (sys.stderr if fd == 2 else sys.stdout).flush()
    saved = os.dup(fd)
    held = Held()
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), fd)
        try:
            yield held
        finally:
            (sys.stderr if fd == 2 else sys.stdout).flush()
            os.dup2(saved, fd)
            os.close(saved)
            buffer.seek(0)
            held.data = buffer.read()


def pass_on(data, fd=2, dropped=()):
    """Write `data` to `fd` without the lines that contain one of `dropped` (strings)."""
    noise = [line.encode() for line in dropped]
    kept = [line for line in data.splitlines(keepends=True) if not any(n in line for n in noise)]
    with os.fdopen(os.dup(fd), "wb") as out:
        out.write(b"".join(kept))


@contextmanager
def without_stderr_lines(known_lines):
    """Hold what is written to file descriptor 2 (C++ logging included) in the block, then pass it on
    without the lines that contain one of `known_lines`."""
    held = Held()
    try:
        with holding(2) as held:
            yield
    finally:
        pass_on(held.data, 2, known_lines)
