"""run_pretrain refuses bad input before it writes anything (the training itself: test_train_e2e.py)."""
from cli_helpers import SMOKE, fails
from paddlellm.training.pretrain import main


def test_bad_input(capsys, tmp_path, tiny_llama):
    out = tmp_path / "out"
    base = [SMOKE, "--device", "cpu", "--model_name_or_path", tiny_llama, "--output_dir", out]
    assert "missing key 'input_dir'" in fails(capsys, main, base)
    assert "no nowhere.bin and nowhere.idx" in fails(capsys, main, base + ["--input_dir", tmp_path / "nowhere"])
    (tmp_path / "two").mkdir()
    for name in ("a.idx", "b.idx"):
        (tmp_path / "two" / name).write_bytes(b"")
    assert "holds 2 .idx files" in fails(capsys, main, base + ["--input_dir", tmp_path / "two"])
    assert not out.exists()
