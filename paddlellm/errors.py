"""The one exception type for mistakes a user can make (bad flags, files, inputs)."""


class UserError(Exception):
    """A problem the user can fix. Message form: 'what went wrong (how to fix it)'."""
