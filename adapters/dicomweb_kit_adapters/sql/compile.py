"""Query terms → SQL predicates on one instance (``instance_values`` rows correlated to it).

Each term compiles to an ``EXISTS`` over the instance's match values, reproducing
:mod:`dicomweb_kit.query.matching` (PS3.4 §C.2.2.2). A compiled term is *exact* (the SQL answer
is the reference answer) or a *superset* (a necessary condition; the term is then re-checked
in Python on the stored metadata). Terms that cannot be pushed down at all (not indexed,
Sequence Matching, a VR other than the indexed one) are left to Python entirely.

The values of non-PN terms (exact values, UID lists, range bounds) are named bind parameters
(``<name>_0``, ``<name>_1``, ...): a search builds the SQL of a query *shape*
(:func:`term_shape`) once and later binds another query's values (:func:`term_params`).
PN and wildcard terms carry their values in the SQL and so are their own shape.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, Final, Literal, NamedTuple

from sqlalchemy import ColumnElement, and_, bindparam, exists, false, or_, select, true
from sqlalchemy.sql.elements import BindParameter

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

__all__ = ["Access", "Compiled", "Driver", "compile_term", "probe_hint", "term_params", "term_shape"]

Access = Literal["seek", "probe", "scan"]

# SQLite's planner (no statistics) may answer a correlated probe "this instance has a value
# in range" with a range scan of a value index instead of the (instance_id, tag) lookup: one
# probe then reads every value of the attribute. The hint pins the lookup.
_PROBE_HINT: Final = "INDEXED BY dwk_values_instance"


def probe_hint(statement: Any, alias: Any) -> Any:
    """``statement`` with ``alias`` (of instance_values, correlated by instance id) read by instance."""
    return statement.with_hint(alias, _PROBE_HINT, "sqlite")


class Driver(NamedTuple):
    """A term as a condition on ONE ``instance_values`` row (``alias`` → predicate, the tag
    included), so that a search can start from the value indexes. ``access``: "seek" (few
    rows match: read the value index), "probe" (count first), "scan" (read the attribute's
    values in entity order)."""

    where: Callable[[Any], ColumnElement[bool]]
    access: Access


class Compiled(NamedTuple):
    """``where``: predicate on the instance (``None``: nothing pushed down); ``exact``: no
    Python re-check needed; ``tag``: the indexed attribute it reads; ``driver``: the term as a
    condition on one value row (exact terms without ``with_irregular`` only)."""

    where: ColumnElement[bool] | None
    exact: bool
    tag: int | None = None
    driver: Driver | None = None


_NOT_PUSHED = Compiled(None, False)


def compile_term(
    term: Term,
    *,
    kind: Kind,
    indexed: Mapping[int, str],
    instance_id: ColumnElement[Any],
    fuzzy: bool,
    with_irregular: bool,
    name: str,
) -> Compiled:
    """Compile ``term`` for the instance whose id is ``instance_id``.

    ``with_irregular`` adds "or the instance has an irregular (unindexable) value of the
    attribute", turning the predicate into a superset whose matches are checked in Python.
    ``name``: prefix of the term's bind parameters, unique per term within a statement.
    """
    matcher = term.matcher
    if isinstance(matcher, Universal):
        return Compiled(None, True)  # PS3.4 §C.2.2.2.3: matches every entity
    if isinstance(matcher, SequenceMatch):
        return _NOT_PUSHED  # §C.2.2.2.6 item matching: answered from stored metadata
    tag = SOURCE_TAG.get(term.tag, term.tag)
    if indexed.get(tag) != term.vr:
        return _NOT_PUSHED
    if term.vr == "PN":
        compiled = _PnTerm(kind, fuzzy).compile(matcher, term.vr, tag, instance_id)
    else:
        compiled = _ValueTerm(kind).compile(matcher, term.vr, tag, instance_id, name)
    if compiled is None:
        return _NOT_PUSHED
    where, exact, driver = compiled
    if with_irregular:
        v = instance_values.alias()
        irregular = select(1).where(v.c.instance_id == instance_id, v.c.tag == tag, v.c.irregular == true())
        where = or_(where, exists(probe_hint(irregular, v)))
        driver = None
    if not exact:
        driver = None
    return Compiled(where, exact, tag, driver)


def term_shape(term: Term, *, indexed: Mapping[int, str]) -> Hashable:
    """What :func:`compile_term`'s SQL for ``term`` depends on besides the values
    :func:`term_params` binds: two terms of one shape compile to the same SQL (same
    ``kind``, ``fuzzy``, ``instance_id`` and ``with_irregular``)."""
    form = _pushed_form(term, indexed)
    return term if form is None else (term.tag, term.vr, form.form)


def term_params(term: Term, name: str, *, indexed: Mapping[int, str]) -> dict[str, Any]:
    """The values of ``term``'s bind parameters in the SQL :func:`compile_term` built with ``name``."""
    form = _pushed_form(term, indexed)
    return {} if form is None else {f"{name}_{n}": value for n, value in enumerate(form.values)}


def _pushed_form(term: Term, indexed: Mapping[int, str]) -> _Form | None:
    """The bound form of a non-PN term that is pushed down; ``None`` for every other term."""
    if term.vr == "PN" or isinstance(term.matcher, (Universal, SequenceMatch)):
        return None
    if indexed.get(SOURCE_TAG.get(term.tag, term.tag)) != term.vr:
        return None
    return _value_form(term.matcher, term.vr)


class _Form(NamedTuple):
    """A non-PN matcher as SQL: ``form`` (hashable, no query values except a wildcard
    pattern, which the dialect renders) and the ``values`` bound into it, in order."""

    form: tuple[Any, ...]
    values: tuple[Any, ...] = ()


def _value_form(matcher: object, vr: str) -> _Form | None:
    if isinstance(matcher, SingleValue):
        if vr in NUMERIC_VRS:  # compared as numbers: "+7" and "007" match 7
            key = number_key(matcher.value)
        elif vr in DATE_TIME_VRS:
            key = normalise_datetime(matcher.value, vr)
        else:
            key = matcher.value.strip(" ")  # trailing/leading padding is insignificant
        return _Form(("none",)) if key is None else _Form(("equal",), (key,))
    if isinstance(matcher, UidList):
        return _Form(("listed",), (list(matcher.uids),)) if vr == "UI" else None
    if isinstance(matcher, RangeMatch):
        if vr not in DATE_TIME_VRS:
            return None
        bounds = (matcher.low, matcher.high)
        return _Form(("range", *(bound is not None for bound in bounds)), tuple(b for b in bounds if b is not None))
    if isinstance(matcher, Wildcard):
        return _Form(("pattern", matcher.pattern))
    return None


def _values_exist(tag: int, instance_id: ColumnElement[Any], build: Any) -> ColumnElement[bool]:
    v = instance_values.alias()
    return exists(probe_hint(select(1).where(v.c.instance_id == instance_id, v.c.tag == tag, build(v)), v))


def _driver(tag: int, build: Callable[[Any], ColumnElement[bool]], access: Access) -> Driver:
    return Driver(lambda v: and_(v.c.tag == tag, build(v)), access)


def _pattern_access(tokens: Pattern) -> Access:
    return "probe" if tokens and isinstance(tokens[0], str) else "scan"


_Result = tuple[ColumnElement[bool], bool, Driver | None]


class _ValueTerm:
    """Non-PN values (PS3.4 §C.2.2.2.1, .2, .4, .5)."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind

    def compile(self, matcher: object, vr: str, tag: int, instance_id: ColumnElement[Any], name: str) -> _Result | None:
        form = _value_form(matcher, vr)
        if form is None:
            return None
        binds: list[BindParameter[Any]] = [
            bindparam(f"{name}_{n}", value, expanding=isinstance(value, list)) for n, value in enumerate(form.values)
        ]
        what = form.form[0]
        if what == "none":
            return false(), True, None
        if what == "equal":
            key = binds[0]

            def equal(v: Any) -> ColumnElement[bool]:
                return v.c.value_key == key  # type: ignore[no-any-return]

            return _values_exist(tag, instance_id, equal), True, _driver(tag, equal, "seek")
        if what == "listed":
            uids = binds[0]

            def listed(v: Any) -> ColumnElement[bool]:
                return v.c.value_key.in_(uids)  # type: ignore[no-any-return]

            return _values_exist(tag, instance_id, listed), True, _driver(tag, listed, "seek")
        if what == "range":
            has_low, has_high = form.form[1], form.form[2]
            low = binds[0] if has_low else None
            high = binds[-1] if has_high else None

            def in_range(v: Any) -> ColumnElement[bool]:
                bounds = [v.c.value_key.is_not(None)]
                if low is not None:
                    bounds.append(v.c.value_key >= low)
                if high is not None:
                    bounds.append(v.c.value_key <= high)
                return and_(*bounds)

            return _values_exist(tag, instance_id, in_range), True, _driver(tag, in_range, "probe")
        assert isinstance(matcher, Wildcard)
        tokens = parse_wildcard(matcher.pattern)

        def matches(v: Any) -> ColumnElement[bool]:
            return matches_pattern(self.kind, v.c.value, tokens)

        return _values_exist(tag, instance_id, matches), True, _driver(tag, matches, _pattern_access(tokens))


class _PnTerm:
    """PN: case-insensitive, per component group, optionally fuzzy (PS3.4 §C.2.2.2.1, PS3.18 §8.3.4.3)."""

    def __init__(self, kind: Kind, fuzzy: bool) -> None:
        self.kind = kind
        self.fuzzy = fuzzy

    def compile(self, matcher: object, vr: str, tag: int, instance_id: ColumnElement[Any]) -> _Result | None:
        if isinstance(matcher, SingleValue):
            query, wildcard = matcher.value, False
        elif isinstance(matcher, Wildcard):
            query, wildcard = matcher.pattern, True
        else:
            return false(), True, None  # UID lists and ranges never match a PN
        if "=" not in query:  # any group of any value may match
            v = instance_values.alias()
            where, exact = self._group(v, query, wildcard)
            probe = probe_hint(select(1).where(v.c.instance_id == instance_id, v.c.tag == tag, where), v)

            def group(alias: Any) -> ColumnElement[bool]:
                return self._group(alias, query, wildcard)[0]

            folded = fold(pn_strip(query), self.fuzzy)
            access: Access = "scan" if self.fuzzy else _pattern_access(parse_wildcard(folded)) if wildcard else "seek"
            return exists(probe), exact, _driver(tag, group, access)
        wanted = (query.split("=") + ["", ""])[:3]
        pairs = [(grp, text) for grp, text in enumerate(wanted) if text]
        if not pairs:
            return false(), True, None
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
            inner = exists(probe_hint(select(1).where(clause), alias))
        outer = and_(first.c.instance_id == instance_id, conditions[0], *([inner] if inner is not None else []))
        return exists(probe_hint(select(1).where(outer), first)), exact, None

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
