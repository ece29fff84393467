"""argparse that reports a bad flag as a UserError (one line, exit 2) instead of usage text."""
import argparse

from paddlellm.errors import UserError


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
