"""User-facing errors."""


class AuditError(Exception):
    """One-line, user-facing error naming the fix.

    Raised for bad input (config, hook names, widths, corrupt files) before long work starts;
    the workflow prints it without a stack trace.
    """
