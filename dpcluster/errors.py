"""Errors that are the user's to fix: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake in the user's input (spec, paths, options). Never shown as a traceback."""


class SpecError(UserError):
    """A bad key or value in a spec; ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)

    def under(self, prefix: str) -> "SpecError":
        """The same error, its key nested under ``prefix``."""
        return SpecError(f"{prefix}.{self.key}" if self.key else prefix, self.message)
