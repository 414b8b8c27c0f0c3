"""User-facing errors."""


class AuditError(Exception):
    """One-line, user-facing error naming the fix.

    Raised for bad input (config, hook names, widths, corrupt files) before long work starts;
    the workflow prints it without a stack trace.
    """


class Problems:
    """Collects the AuditErrors of many checks, so that a config with five mistakes is reported
    in one round (one line each), not five."""

    def __init__(self):
        self.lines: list[str] = []

    def check(self, fn, *args, prefix: str = "", **kwargs):
        """fn(*args, **kwargs), or None after recording its AuditError."""
        try:
            return fn(*args, **kwargs)
        except AuditError as e:
            self.lines += [prefix + line for line in str(e).splitlines() if line.strip()]
            return None

    def add(self, line: str) -> None:
        self.lines.append(line)

    def raise_any(self) -> None:
        if self.lines:
            raise AuditError("\n".join(dict.fromkeys(self.lines)))
