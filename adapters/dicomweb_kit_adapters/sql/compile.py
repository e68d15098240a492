"""Query terms → SQL predicates on one instance (``instance_values`` rows correlated to it).

Each term compiles to an ``EXISTS`` over the instance's match values, reproducing
:mod:`dicomweb_kit.query.matching` (PS3.4 §C.2.2.2). A compiled term is *exact* (the SQL answer
is the reference answer) or a *superset* (a necessary condition; the term is then re-checked
in Python on the stored metadata). Terms that cannot be pushed down at all (not indexed,
Sequence Matching, a VR other than the indexed one) are left to Python entirely.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true

from dicomweb_kit import (
    RangeMatch,
    SequenceMatch,
    SingleValue,
    Term,
    UidList,
    Universal,
    Wildcard,
    fold,
    normalise_datetime,
    pn_strip,
)

from .dialects import ANY, Kind, Pattern, matches_pattern, parse_wildcard
from .extract import DATE_TIME_VRS, NUMERIC_VRS, SOURCE_TAG, number_key
from .schema import instance_values

__all__ = ["Compiled", "compile_term"]


class Compiled(NamedTuple):
    """``where``: predicate on the instance (``None``: nothing pushed down); ``exact``: no
    Python re-check needed; ``tag``: the indexed attribute it reads."""

    where: ColumnElement[bool] | None
    exact: bool
    tag: int | None = None


_NOT_PUSHED = Compiled(None, False)


def compile_term(
    term: Term,
    *,
    kind: Kind,
    indexed: Mapping[int, str],
    instance_id: ColumnElement[Any],
    fuzzy: bool,
    with_irregular: bool,
) -> Compiled:
    """Compile ``term`` for the instance whose id is ``instance_id``.

    ``with_irregular`` adds "or the instance has an irregular (unindexable) value of the
    attribute", turning the predicate into a superset whose matches are checked in Python.
    """
    matcher = term.matcher
    if isinstance(matcher, Universal):
        return Compiled(None, True)  # PS3.4 §C.2.2.2.3: matches every entity
    if isinstance(matcher, SequenceMatch):
        return _NOT_PUSHED  # §C.2.2.2.6 item matching: answered from stored metadata
    tag = SOURCE_TAG.get(term.tag, term.tag)
    if indexed.get(tag) != term.vr:
        return _NOT_PUSHED
    compiler = _PnTerm(kind, fuzzy) if term.vr == "PN" else _ValueTerm(kind)
    compiled = compiler.compile(matcher, term.vr, tag, instance_id)
    if compiled is None:
        return _NOT_PUSHED
    where, exact = compiled
    if with_irregular:
        v = instance_values.alias()
        irregular = exists(select(1).where(v.c.instance_id == instance_id, v.c.tag == tag, v.c.irregular == true()))
        where = or_(where, irregular)
    return Compiled(where, exact, tag)


def _values_exist(tag: int, instance_id: ColumnElement[Any], build: Any) -> ColumnElement[bool]:
    v = instance_values.alias()
    return exists(select(1).where(v.c.instance_id == instance_id, v.c.tag == tag, build(v)))


class _ValueTerm:
    """Non-PN values (PS3.4 §C.2.2.2.1, .2, .4, .5)."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind

    def compile(
        self, matcher: object, vr: str, tag: int, instance_id: ColumnElement[Any]
    ) -> tuple[ColumnElement[bool], bool] | None:
        if isinstance(matcher, SingleValue):
            if vr in NUMERIC_VRS:  # compared as numbers: "+7" and "007" match 7
                key = number_key(matcher.value)
            elif vr in DATE_TIME_VRS:
                key = normalise_datetime(matcher.value, vr)
            else:
                key = matcher.value.strip(" ")  # trailing/leading padding is insignificant
            if key is None:
                return false(), True
            return _values_exist(tag, instance_id, lambda v: v.c.value_key == key), True
        if isinstance(matcher, UidList):
            if vr != "UI":
                return None
            uids = list(matcher.uids)
            return _values_exist(tag, instance_id, lambda v: v.c.value_key.in_(uids)), True
        if isinstance(matcher, RangeMatch):
            if vr not in DATE_TIME_VRS:
                return None
            low, high = matcher.low, matcher.high

            def in_range(v: Any) -> ColumnElement[bool]:
                bounds = [v.c.value_key.is_not(None)]
                if low is not None:
                    bounds.append(v.c.value_key >= low)
                if high is not None:
                    bounds.append(v.c.value_key <= high)
                return and_(*bounds)

            return _values_exist(tag, instance_id, in_range), True
        if isinstance(matcher, Wildcard):
            tokens = parse_wildcard(matcher.pattern)
            return _values_exist(tag, instance_id, lambda v: matches_pattern(self.kind, v.c.value, tokens)), True
        return None


class _PnTerm:
    """PN: case-insensitive, per component group, optionally fuzzy (PS3.4 §C.2.2.2.1, PS3.18 §8.3.4.3)."""

    def __init__(self, kind: Kind, fuzzy: bool) -> None:
        self.kind = kind
        self.fuzzy = fuzzy

    def compile(
        self, matcher: object, vr: str, tag: int, instance_id: ColumnElement[Any]
    ) -> tuple[ColumnElement[bool], bool] | None:
        if isinstance(matcher, SingleValue):
            query, wildcard = matcher.value, False
        elif isinstance(matcher, Wildcard):
            query, wildcard = matcher.pattern, True
        else:
            return false(), True  # UID lists and ranges never match a PN
        if "=" not in query:  # any group of any value may match
            v = instance_values.alias()
            where, exact = self._group(v, query, wildcard)
            return exists(select(1).where(v.c.instance_id == instance_id, v.c.tag == tag, where)), exact
        wanted = (query.split("=") + ["", ""])[:3]
        pairs = [(grp, text) for grp, text in enumerate(wanted) if text]
        if not pairs:
            return false(), True
        # Every non-empty wanted group must match its group of the SAME value.
        aliases = [instance_values.alias() for _ in pairs]
        exact = True
        conditions: list[ColumnElement[bool]] = []
        first = aliases[0]
        for alias, (grp, text) in zip(aliases, pairs, strict=True):
            where, group_exact = self._group(alias, text, wildcard)
            exact = exact and group_exact
            conditions.append(and_(alias.c.tag == tag, alias.c.grp == grp, where))
        inner: ColumnElement[bool] | None = None
        for index in range(len(aliases) - 1, 0, -1):
            alias = aliases[index]
            clause = and_(
                alias.c.instance_id == first.c.instance_id,
                alias.c.vidx == first.c.vidx,
                conditions[index],
                *([inner] if inner is not None else []),
            )
            inner = exists(select(1).where(clause))
        outer = and_(first.c.instance_id == instance_id, conditions[0], *([inner] if inner is not None else []))
        return exists(select(1).where(outer)), exact

    def _group(self, v: Any, raw: str, wildcard: bool) -> tuple[ColumnElement[bool], bool]:
        """One group's predicate on alias ``v`` (``_pn_group_matches`` of matching.py)."""
        column = v.c.value_key if self.fuzzy else v.c.value
        query = fold(pn_strip(raw), self.fuzzy)
        if wildcard:
            tokens = parse_wildcard(query)
            whole = matches_pattern(self.kind, column, tokens)
            if not self.fuzzy:
                return and_(column != "", whole), True
            # Fuzzy: the whole group or any one component may match: a superset here
            # (the pattern anywhere), re-checked in Python.
            anywhere: Pattern = [ANY, *tokens, ANY]
            return and_(column != "", matches_pattern(self.kind, column, anywhere)), False
        if not query:
            return false(), True
        equal = column == query
        if not self.fuzzy:
            return equal, True
        if "^" in query:
            # Each wanted component a prefix of the same component: a superset, re-checked.
            parts = [part.strip() for part in query.split("^")]
            tokens = [ANY]
            for index, part in enumerate(parts):
                if index:
                    tokens += [ANY, "^", ANY]
                tokens += [part]
            tokens.append(ANY)
            return or_(equal, matches_pattern(self.kind, column, _merge(tokens))), False
        if " " in query:
            return equal, True  # components hold no spaces: only the whole group can be equal
        # A prefix of a component: at the start or right after a "^" or " " separator. Exact.
        return (
            or_(
                equal,
                matches_pattern(self.kind, column, [query, ANY]),
                matches_pattern(self.kind, column, [ANY, "^" + query, ANY]),
                matches_pattern(self.kind, column, [ANY, " " + query, ANY]),
            ),
            True,
        )


def _merge(tokens: Pattern) -> Pattern:
    out: Pattern = []
    for token in tokens:
        if token == "":
            continue
        if token is ANY and out and out[-1] is ANY:
            continue
        if isinstance(token, str) and out and isinstance(out[-1], str):
            out[-1] = out[-1] + token
            continue
        out.append(token)
    return out
