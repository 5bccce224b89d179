"""Errors that reach the user as one line."""
from __future__ import annotations

import os


class InputError(Exception):
    """Bad input: a file or folder the user gave is missing, unreadable or inconsistent.

    The CLI prints it as one line (no traceback unless --debug) and exits non-zero.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class Silent(InputError):
    """An error another process of the run has already reported: this one exits non-zero quietly."""

    def __init__(self, problem: str):
        super().__init__(None, problem)


class PeerLost(InputError):
    """Another process of a run stopped, or stopped answering within the timeout."""

    def __init__(self, problem: str):
        super().__init__(None, problem)


LOST_PEER_STATUS = 3  # the exit status of a process that lost the others, under `--nproc`'s launcher


def check_option(ok: bool, option: str, value, rule: str) -> None:
    """Refuse an option outside its range before any work starts: `--max-steps -1: must be ≥ 0`."""
    if not ok:
        raise InputError(None, f"--{option.replace('_', '-')} {value}: {rule}")
