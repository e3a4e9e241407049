"""User-facing errors: the CLI turns them into exit code 2, the app into an error box."""


class UserError(Exception):
    """A mistake in what the user asked for or handed us; the message says what and where."""


class DataError(UserError):
    """A dataset file or folder is missing or malformed."""


class ZooError(UserError):
    """A zoo or workspace on disk is missing, malformed or does not match its manifest."""


class ArchitectureError(UserError):
    """An architecture spec is inconsistent, or weights do not fit it."""


class Interrupted(Exception):
    """Long work stopped on request after saving what it had; running it again resumes."""
