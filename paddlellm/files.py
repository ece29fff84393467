"""Files and directories that appear whole or not at all, with the permissions the user's umask gives;
JSONL results streamed to a sibling as they come; and the one JSON reader.

Every output is written into a temporary sibling, flushed to disk, given the umask's permissions
(mkstemp/mkdtemp create them private) and renamed into place. A directory that already exists at the
destination is moved aside first and restored if the swap fails.
"""
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from paddlellm.errors import UserError


def umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(path, mask):
    """Give `path` (a file, or a directory and everything in it) the umask's permissions and fsync files."""
    path = Path(path)
    if path.is_dir():
        for root, dirs, names in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for name in names:
                _publish(Path(root, name), mask)
        return
    os.chmod(path, 0o666 & ~mask)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_directory(out, before_swap=None):
    """Yield an empty staging directory beside `out`; when the block ends without error, publish it and swap
    it into place of `out` (a previous `out` is replaced; it is restored if the swap fails). `before_swap()`,
    if given, runs just before the swap (e.g. to re-check that `out` may still be replaced). On any error
    the staging directory is removed and `out` is untouched."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = None
    try:
        yield staging
        _publish(staging, umask())
        if before_swap is not None:
            before_swap()
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(staging, out)
        _fsync_dir(out.parent)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old / out.name, out)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(path, mode="w", encoding="utf-8"):
    """Yield a file object on a temporary sibling of `path`; when the block ends without error, fsync it
    and rename it into place with the umask's permissions. On error `path` keeps its old content."""
    path = Path(path).resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JsonlStream:
    """JSON lines appended as they come to the visible sibling `<path>.partial`, one write per line (a kill
    leaves only whole lines), and renamed onto `path` with the umask's permissions by finish(): until then a
    previous `path` is untouched. Creating it is the check that `path` can be written (OSError if not)."""

    def __init__(self, path):
        self.path = Path(path).resolve()
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.rows = 0
        self._file = open(self.partial, "wb", buffering=0)

    def write(self, row):
        line = memoryview((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        while line:
            line = line[self._file.write(line):]
        self.rows += 1

    def finish(self):
        os.fsync(self._file.fileno())
        self._file.close()
        os.chmod(self.partial, 0o666 & ~umask())
        os.replace(self.partial, self.path)
        _fsync_dir(self.path.parent)

    def abandon(self):
        """Stop writing: the finished rows stay in `partial`, which is removed if it holds none."""
        self._file.close()
        if not self.rows:
            self.partial.unlink(missing_ok=True)


def write_json(path, data):
    """`data` as indented JSON at `path`, atomically."""
    with atomic_file(path) as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path, hint="fix the file or download it again", missing_ok=False):
    """The JSON object in `path`; a missing file ({} with missing_ok), bad JSON, bad UTF-8 or a non-object
    is a UserError naming the file and ending with `hint`."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return {}
        raise UserError(f"{path} does not exist ({hint})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno} ({hint})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text: {e} ({hint})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object ({hint})")
    return data
