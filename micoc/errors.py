"""The MicocError family: every failure a user can cause.

The CLI turns a MicocError into one clear message and exit code 2 (no
traceback unless --debug); anything else is an internal error (exit 1).
"""

from __future__ import annotations


class MicocError(Exception):
    """A user-facing error: bad input, bad usage, missing tool.

    `where` names the file, and if known the line/column or node, so the
    message points at what to fix.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class InputError(MicocError):
    """A file that cannot be read or does not make sense (ONNX, .mir, .npz, CSV, JSON)."""


class ParseError(InputError):
    """Malformed IR text; `where` is `file:line:col`."""


class UnsupportedError(MicocError):
    """Something valid that micoc (or a target) cannot handle, e.g. an unknown ONNX op."""


class VerificationError(MicocError):
    """The IR breaks a structural or type rule (after a pass, or in a parsed file)."""


class ToolchainError(MicocError):
    """An external tool (C compiler, RISC-V gcc, QEMU) is missing or failed."""


class UsageError(MicocError):
    """Bad command-line options or pass pipeline strings."""
