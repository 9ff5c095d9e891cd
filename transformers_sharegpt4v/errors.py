"""Bad input, as the package reports it: `UsageError`, and the one check of a command-line value that several
commands share (`looks_like_hub_id`). A leaf module: it imports nothing of the package and nothing heavy, so
a command's argument checks cost nothing at start-up.

`sharegpt4v` (cli.py) turns a `UsageError` into one line, `sharegpt4v COMMAND: error: MESSAGE`, and exit code 2;
any other exception keeps its traceback (it may be a bug, and its context matters). A `UsageError` is a
`ValueError` (and `MissingFileError` also a `FileNotFoundError`), so Python callers that catch those keep
working. Its message names the file, flag or value at fault and what to do, in the command line's terms
(`--overwrite`, not `overwrite=True`).
"""

from __future__ import annotations

__all__ = ["MissingFileError", "UsageError", "looks_like_hub_id"]


class UsageError(ValueError):
    """Input that cannot be used: a missing file, a malformed record, an option that does not apply. The command
    stops before it changes anything, so the same command works once the input is fixed."""


class MissingFileError(UsageError, FileNotFoundError):
    """A file or folder named on the command line (or in a recipe) does not exist."""


def looks_like_hub_id(name: str) -> bool:
    """True for "name" or "owner/name" (what the Hub accepts as a repo id), False for anything that can only be a
    path: "./x", "/x", "~/x", "a/b/c", "a\\b", a trailing slash."""
    parts = str(name).split("/")
    if not name or str(name).startswith((".", "/", "~")) or "\\" in str(name) or len(parts) > 2 or "" in parts:
        return False
    return all(part.replace("-", "").replace("_", "").replace(".", "").isalnum() for part in parts)
