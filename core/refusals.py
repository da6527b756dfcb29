"""The one refusal: what the console will not do, and why, in words for whoever asked.

Domain modules raise it; views show it with ``core.views.refused`` (a form shows it on
itself), commands print it. Plain Python, so the engine and resources can raise it too.
"""


class Refused(Exception):
    def __init__(self, message: str, *, see: str = "") -> None:
        super().__init__(message)
        self.see = see  # a page that explains more: the run holding the environment, say
