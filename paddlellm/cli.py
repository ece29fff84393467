"""Entry-point wrapper: user errors become one line on stderr and exit code 2."""
import sys

from paddlellm.errors import UserError


def run_main(main, argv=None):
    """Call main(argv); on UserError print `error: ...` and exit 2 (traceback only with --debug)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        return main([a for a in argv if a != "--debug"])
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
