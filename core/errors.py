"""User-facing errors: the CLI turns them into exit code 2, the app into an error box."""

import errno


class UserError(Exception):
    """A mistake in what the user asked for or handed us; the message says what and where."""


class DataError(UserError):
    """A dataset file or folder is missing or malformed."""


class ZooError(UserError):
    """A zoo or workspace on disk is missing, malformed or does not match its manifest."""


class ArchitectureError(UserError):
    """An architecture spec is inconsistent, or weights do not fit it."""


# What Ctrl-C prints (exit 130), wherever it lands: the CLI's main, or the import of torch before main runs.
INTERRUPTED = (
    "interrupted: progress is kept up to the last saved point (a zoo's last finished epoch, an autoencoder's "
    "state of a few seconds ago); run the same command to resume"
)


class Interrupted(Exception):
    """Long work stopped on request after saving what it had; running it again resumes."""


def clipped(path: str, limit: int = 200) -> str:
    """A path as a message shows it: whole, or where it is over-long (which is then the error itself) its start
    and its length, enough to recognise it."""
    return path if len(path) <= limit else f"{path[: limit - 40]}... ({len(path):,} characters)"


# What to do about an operating-system error, by errno: the path it names is the user's to fix.
_REMEDIES = {
    errno.ENOSPC: "the disk is full: free space there or choose a folder on another disk",
    errno.EDQUOT: "the disk quota is used up: free space or choose a folder on another disk",
    errno.EROFS: "a read-only file system: choose a writable folder",
    errno.ENAMETOOLONG: "a name too long for the file system: choose a shorter path",
    errno.EACCES: "permission denied: choose a folder you may write to, or change its permissions",
    errno.EPERM: "not permitted here: choose an ordinary folder you own",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "a folder where a file was expected: choose another path",
    errno.ENOENT: "no such file or folder: check the path",
    errno.EEXIST: "already there: choose a new name or remove it",
    errno.ENOTEMPTY: "a folder that is not empty: choose a new name or remove it",
    errno.ELOOP: "too many levels of links: choose a path without a link cycle",
    errno.EMFILE: "too many open files: close other programs or raise the limit (ulimit -n)",
}


def os_error_remedy(exc: OSError, unknown: str | None = None) -> str:
    """What to do about an operating-system error, by its errno; for one without advice, `unknown` or its own
    description."""
    return _REMEDIES.get(exc.errno, unknown or exc.strerror or type(exc).__name__)


def os_error_message(exc: OSError, fallback: str = "(no path given)") -> str:
    """One line for an operating-system error met while reading or writing: the path it names (else `fallback`,
    e.g. the workspace the command wrote to), what went wrong and what to do. For the CLI's exit 2 and the app's
    error box: a full disk or a read-only folder is the user's to fix, not a bug to show a traceback for."""
    where = clipped(" -> ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None) or fallback)
    what = exc.strerror or type(exc).__name__
    remedy = os_error_remedy(exc, "check the path and the disk")
    return f"{where}: {what} ({remedy})"
