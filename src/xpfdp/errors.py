"""The one base class of every error xpfdp raises on purpose.

`except xpfdp.XpfdpError` catches configuration errors, frame-conservation failures, ring
and UMEM misuse, XDP attach conflicts and start-up failures alike; each specific class also
derives from the built-in exception it always was (ValueError, AssertionError, OSError,
...), so existing handlers keep working.
"""


class XpfdpError(Exception):
    """Base class of xpfdp's own exceptions."""
