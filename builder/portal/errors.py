"""The errors of the APK reader: one family, each with a stable ``code``.

:class:`ApkError` is a :class:`builder.errors.FormatError`, so ``depot build`` skips a bad APK in
``repo/android/`` with a warning like any other unpublishable file, ``depot check`` prints it as
INVALID, and the portal answers it with 422 and the code. Nothing else may escape the reader:
every damaged input ends as one of these (the differential test against apksigner checks it).
"""

from __future__ import annotations

from builder.errors import FormatError

MALFORMED = "apk_malformed"
UNSIGNED = "apk_unsigned"
SIGNATURE_INVALID = "apk_signature_invalid"
LIMIT_EXCEEDED = "apk_limit_exceeded"


class ApkError(FormatError, ValueError):
    """An APK the store cannot take. ``code`` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ApkFormatError(ApkError):
    """The file is not an APK that can be read (not a ZIP, a damaged record, a broken entry)."""

    def __init__(self, message: str) -> None:
        super().__init__(MALFORMED, message)


class ApkLimitError(ApkError):
    """An entry Depot has to read is larger than the reader allows (a cap, not damage)."""

    def __init__(self, message: str) -> None:
        super().__init__(LIMIT_EXCEEDED, message)
