"""The one exception type the CLI turns into a readable message (exit code 2)."""


class UserError(Exception):
    """Bad input from the user: a malformed space.yaml, a bad dataset, an unknown sweep.

    The message is complete and meant to be printed as is, without a traceback.
    """
