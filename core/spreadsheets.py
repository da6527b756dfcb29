"""What a CSV hands to a spreadsheet, made safe to open."""

# A spreadsheet runs a cell starting with one of these as a formula (=HYPERLINK(...) in a
# prompt or a user name, typed by any caller): quoted, it stays text (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(value: object) -> object:
    """``value``, quoted if a spreadsheet would run it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
