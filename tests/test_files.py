"""Outputs appear whole or not at all, with the umask's permissions; the one JSON reader's errors."""
import os
import stat

import pytest

from paddlellm import files
from paddlellm.errors import UserError


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_directory_appears_with_umask_permissions(tmp_path, umask_027):
    out = tmp_path / "out"
    with files.atomic_directory(out) as staging:
        (staging / "sub").mkdir()
        (staging / "sub" / "a.txt").write_text("a")
        assert not out.exists()
    assert (out / "sub" / "a.txt").read_text() == "a"
    # 0o777 / 0o666 less the umask 0o027, not mkdtemp's private 0o700
    assert (mode(out), mode(out / "sub"), mode(out / "sub" / "a.txt")) == (0o750, 0o750, 0o640)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old copy left behind


def test_directory_replaces_the_old_one_or_leaves_it_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_directory(out) as staging:
            (staging / "new.txt").write_text("new")
            raise RuntimeError("failed half way")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    with files.atomic_directory(out) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_old_directory_restored_when_the_swap_fails(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    real_replace = os.replace

    def replace(src, dst):
        if str(src).startswith(str(tmp_path / ".out.tmp-")):
            raise OSError("disk gone")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(OSError, match="disk gone"):
        with files.atomic_directory(out) as staging:
            (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_before_swap_can_refuse(tmp_path):
    def refuse():
        raise UserError("no")

    with pytest.raises(UserError):
        with files.atomic_directory(tmp_path / "out", before_swap=refuse) as staging:
            (staging / "x").write_text("x")
    assert list(tmp_path.iterdir()) == []


def test_file_keeps_old_content_on_error_and_gets_umask_permissions(tmp_path, umask_027):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_file(path) as f:
            f.write("half")
            raise RuntimeError
    assert path.read_text() == "old"
    files.write_json(path, {"a": 1})
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert mode(path) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


@pytest.mark.parametrize("content, message", [
    (b"{", "is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2 (re-export)"),
    (b"\xff{}", "is not UTF-8 text"),
    (b"[1]", "does not hold a JSON object (re-export)"),
])
def test_read_json_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        files.read_json(path, hint="re-export")
    assert str(info.value).startswith(f"{path} ") and message in str(info.value)


def test_read_json_missing(tmp_path):
    assert files.read_json(tmp_path / "none.json", missing_ok=True) == {}
    with pytest.raises(UserError, match="does not exist"):
        files.read_json(tmp_path / "none.json")
