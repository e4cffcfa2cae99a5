"""Errors about things the user controls (files, params, bundles): each CLI reports one as a
single line and exits with status 2, without a traceback."""


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
