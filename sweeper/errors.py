"""The exceptions the CLI turns into a readable message (exit code 2): `UserError`, and its
`DataError`, which names the spec key the data came from."""


class UserError(Exception):
    """Bad input from the user: a malformed space.yaml, a bad dataset, an unknown sweep.

    The message is complete and meant to be printed as is, without a traceback.
    """


class DataError(UserError):
    """A problem with the data a spec names; `field` is the spec key it comes from, so the
    message can point at that key's line in space.yaml."""

    def __init__(self, message: str, field: str = "data.source"):
        super().__init__(message)
        self.field = field
