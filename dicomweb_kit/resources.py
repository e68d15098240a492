"""Resource addressing: query/retrieve levels, resource keys and UID validation (PS3.5 §9.1)."""

from __future__ import annotations

import enum
import re

import msgspec

from .errors import InvalidUid

__all__ = ["Level", "ResourceKey", "validate_uid"]

# PS3.5 §9.1: components of digits separated by ".", no leading zero in a multi-digit
# component, at most 64 characters in all.
_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")


def validate_uid(value: str, /, *, name: str = "UID") -> str:
    """Return ``value`` if it is a valid UID, else raise :class:`InvalidUid` naming ``name``."""
    if len(value) > 64 or not _UID.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidUid(f"{name} {shown!r} is not a valid UID (PS3.5 §9.1)")
    return value


class Level(enum.StrEnum):
    """Query/retrieve levels of the Study Root information model (PS3.4 §C.6.2)."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


class ResourceKey(msgspec.Struct, frozen=True):
    """The target of a request: a study, series or instance, or nothing (all studies).

    Fields are filled from the top down: a series key has ``study`` and ``series``; ``study``
    may be ``None`` only for the top-level ``/series`` and ``/instances`` queries.
    """

    study: str | None = None
    series: str | None = None
    instance: str | None = None

    @classmethod
    def parse(cls, study: str | None = None, series: str | None = None, instance: str | None = None) -> ResourceKey:
        """Build a key from path parameters, validating each UID."""
        return cls(
            study=None if study is None else validate_uid(study, name="StudyInstanceUID"),
            series=None if series is None else validate_uid(series, name="SeriesInstanceUID"),
            instance=None if instance is None else validate_uid(instance, name="SOPInstanceUID"),
        )

    @property
    def level(self) -> Level | None:
        """The deepest level the key names, or ``None`` for the whole archive."""
        if self.instance is not None:
            return Level.INSTANCE
        if self.series is not None:
            return Level.SERIES
        if self.study is not None:
            return Level.STUDY
        return None

    def path(self) -> str:
        """The resource path relative to the service root, e.g. ``studies/1.2/series/3.4``."""
        parts: list[str] = []
        if self.study is not None:
            parts += ["studies", self.study]
        if self.series is not None:
            parts += ["series", self.series]
        if self.instance is not None:
            parts += ["instances", self.instance]
        return "/".join(parts)

    def __str__(self) -> str:
        return self.path() or "/"
