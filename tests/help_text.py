"""An entry point's --help, parsed into {flag: its help text}, with the checks every flag must pass."""
import re

import pytest

from paddlellm.cli import run_main


def help_entries(capsys, main, required=("--model_name_or_path", "--output_path")):
    """Run `main --help` (exit 0); check that every flag has help text and states its default (required
    flags excepted); return {flag: help text}."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, ["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    options = text[text.index("options:"):].splitlines()[1:]
    entries, flag = {}, None
    for line in options:
        if re.match(r"  -", line):
            signature, _, rest = line.strip().partition("  ")
            flag = signature.split(",")[-1].split()[0]
            entries[flag] = rest.strip()
        elif flag:
            entries[flag] += " " + line.strip()
    for flag, help_text in entries.items():
        if flag == "--help":
            continue
        assert help_text, f"{flag} has no help text"
        assert flag in required or "default" in help_text, f"{flag} does not state its default: {help_text}"
    return entries
