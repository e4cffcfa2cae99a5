"""Errors about things the user controls (files, params, bundles): each CLI reports one as a
single line and exits with status 2, without a traceback (`run_cli`)."""

import gc
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix; the message names what (file, row, key) and why."""


class InputError(UserError):
    """A problem with a file the user gave: the message names the file and what is wrong."""


class ParamsError(UserError):
    """A params.yaml value that no stage could use: the message names the key and the value."""


class BundleError(UserError):
    """A model bundle that is missing, damaged, or made by an incompatible version."""


class DownloadError(UserError):
    """The download failed; the message says how to get the file by hand or run offline."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that a CLI unwinds as for Ctrl-C: temporary
    files are removed on the way out and the exit status says what happened."""


def raise_on_signals() -> None:
    """Ctrl-C raises KeyboardInterrupt and SIGTERM raises Terminated in this process, even
    when it was started with SIGINT ignored (a background job of a script)."""
    import signal

    def raise_terminated(signum, frame):
        raise Terminated

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_terminated)


def run_cli(prog: str, work: Callable[[], int], unchanged: str, path: str = "") -> int:
    """A command's exit status: `work()`'s, or 2 for a UserError or an OSError (the disk
    filled, a file vanished), 130 for Ctrl-C and 143 for SIGTERM, each told in one line that
    ends with `unchanged` (what was left as it was). `path` names an OSError without a file.
    """
    raise_on_signals()
    try:
        return work()
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        where = f"{err.filename or path}: " if (err.filename or path) else ""
        print(f"{prog}: error: {where}{err.strerror or err}; {unchanged}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {unchanged}", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{prog}: terminated; {unchanged}", file=sys.stderr)
        return 143
    finally:
        # The process ends next: keep TensorFlow's million objects out of the interpreter's
        # final garbage collections, which would take most of a second to find nothing to free.
        gc.freeze()
