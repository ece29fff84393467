"""Keeping Paddle's known, harmless C++ log lines (glog, written to file descriptor 2) away from users."""
import os
import sys
import tempfile
from contextlib import contextmanager


@contextmanager
def without_stderr_lines(known_lines):
    """Hold what is written to file descriptor 2 (C++ logging included) in the block, then pass it on
    without the lines that contain one of `known_lines`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            noise = [line.encode() for line in known_lines]
            kept = [line for line in held.read().splitlines(keepends=True) if not any(n in line for n in noise)]
            with os.fdopen(os.dup(2), "wb") as stderr:
                stderr.write(b"".join(kept))
