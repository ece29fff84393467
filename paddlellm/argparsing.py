"""argparse that reports a bad flag as a UserError (one line, exit 2) instead of usage text."""
import argparse

from paddlellm.errors import UserError


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` after every flag's help, except required flags and help that states its default."""

    def _get_help_string(self, action):
        if action.required or "default" in (action.help or "") or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")


def str2bool(value):
    """PaddleNLP-style boolean flags accept both `--flag` and `--flag true|false`."""
    if isinstance(value, bool):
        return value
    if value.lower() in ("1", "true", "yes", "y"):
        return True
    if value.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")


def add_bool(parser, name, help):
    parser.add_argument(name, type=str2bool, nargs="?", const=True, default=None, help=help)


def add_debug(parser):
    """--debug is acted on by paddlellm.cli.run_main (it shows the traceback of an error); listed for --help."""
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
