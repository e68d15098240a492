"""QIDO-RS search over the SQL index (PS3.18 §10.6, matching per PS3.4 §C.2.2.2).

A study (series) matches when ONE of its instances matches every term, so every term is a
predicate on an instance and the entity is selected with ``EXISTS`` over its instances.
Two paths:

* **SQL only** (every term compiled exactly, no irregular value involved): the entity query
  carries the predicates, the stable order (first insertion: study, series, instance) and
  ``LIMIT limit+1 OFFSET offset``.
* **Answered from stored metadata** (a term on an attribute that is not indexed, Sequence
  Matching, fuzzy PN forms SQL cannot express exactly, or instances with irregular values):
  the SQL-expressible part still filters the candidates, which are streamed in keyset pages of
  500 instances in the stable order and checked with the reference matcher
  (``instance_matches``) on their stored metadata; offset and limit are applied after. Slower,
  never wrong.

Ordering (``orderby``, semantics in :mod:`dicomweb_kit.query.ordering`):

* **In SQL** when every term is answered in SQL and every sort key is an indexed attribute
  without irregular values: each key is a correlated scalar subquery on ``instance_values``
  (the first value, ``vidx = 0``, of the entity's representative instance: the highest
  instance id of the study/series, the instance itself at instance level). It reads
  ``value_key`` (DA/TM/DT normalised, numbers in the order-preserving form of
  ``extract.number_key``, other text stripped, all compared under the binary collation, i.e. by
  code point) or, for PN, ``value`` of the first non-empty group (case-folded, group order
  Alphabetic, Ideographic, Phonetic). Empty texts read as NULL. The entity query is
  ``ORDER BY s IS NULL, s [DESC], ..., <stable order>`` (NULLs last on every engine, ties in
  the stable order) with ``LIMIT``/``OFFSET``.
* **In Python** otherwise (a key not indexed, an irregular value of a key's attribute, or terms
  answered from metadata): every matching entity id is collected in the stable order, the
  representative instance's stored metadata is read (in batches) and the ids are sorted with
  the core's :func:`~dicomweb_kit.sort_key`; offset and limit are applied after. Memory and
  time grow with the number of matches, not the page size; the order is the same.

Statements are built once per query *shape* (level, which scope keys are given, limit/offset
present, orderby, and each term's :func:`~.compile.term_shape`) and kept in a bounded cache;
a later query of the shape binds its own values (scope UIDs, page bounds, term values) to
them. Building a statement and its cache key cost more than running it on SQLite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import partial
from typing import Any, Final, NamedTuple

import msgspec
from sqlalchemy import ColumnElement, bindparam, exists, false, func, literal, select, true, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from dicomweb_kit import Level, MatchRow, OrderKey, Page, Query, ResourceKey, Term, instance_matches, sort_key

from .compile import Access, compile_term, term_params, term_shape
from .dialects import Kind
from .schema import instance_values, instances, series, studies
from .sqlite_direct import fetch
from .study_summary import decode_values, study_values

__all__ = ["search"]

_BATCH: Final = 500
# Aliases built once (building one sets up its column collection: a visible per-query cost).
_INNER: Final = instances.alias("i")
_NEWEST: Final = instances.alias("newest")
_REPRESENTATIVE: Final = instances.alias("r")
_DRIVING: Final = instance_values.alias("d")


def _decode(data: bytes) -> dict[str, Any]:
    decoded = msgspec.json.decode(bytes(data))
    return decoded if isinstance(decoded, dict) else {}


class _Plan:
    """A query shape's analysis and statements: built for the first query of the shape, its
    statements then run with each query's own values (:func:`_params`)."""

    __slots__ = ("residual", "statements", "tags")

    def __init__(self, residual: tuple[int, ...], tags: list[int]) -> None:
        self.residual = residual  # positions of the terms left to Python
        self.tags = tags  # the indexed tags the SQL predicates read
        self.statements: dict[str, Any] = {}

    def statement(self, name: str, build: Callable[[], Any]) -> Any:
        # (two threads may build one statement at once: both results are equal)
        found = self.statements.get(name)
        if found is None:
            found = self.statements[name] = build()
        return found


_PLANS_PER_INDEX: Final = 256
# id(indexed) -> (indexed, its plans by shape); the entry holds ``indexed``, so the id stays its.
_plans: dict[int, tuple[Mapping[int, str], dict[Hashable, _Plan]]] = {}


def _plan(query: Query, kind: Kind, indexed: Mapping[int, str]) -> _Plan:
    scope = query.scope
    shape = (
        kind,
        query.level,
        scope.study is None,
        scope.series is None,
        scope.instance is None,
        query.fuzzy,
        query.orderby,
        query.limit is None,
        query.offset > 0,
        *(term_shape(term, indexed=indexed) for term in query.terms),
    )
    entry = _plans.get(id(indexed))
    if entry is None or entry[0] is not indexed:
        if len(_plans) >= 64:
            _plans.clear()
        entry = _plans[id(indexed)] = (indexed, {})
    plans = entry[1]
    plan = plans.get(shape)
    if plan is None:
        if len(plans) >= _PLANS_PER_INDEX:
            plans.clear()
        plan = plans[shape] = _analyse(query, kind, indexed)
    return plan


def _compiled_terms(query: Query, kind: Kind, indexed: Mapping[int, str], instance_id: Any) -> list[Any]:
    """Each term of ``query`` compiled against ``instance_id``, its values as parameters ``t<n>_*``."""
    compile = partial(compile_term, kind=kind, indexed=indexed, fuzzy=query.fuzzy, with_irregular=False)
    return [compile(term, instance_id=instance_id, name=f"t{n}") for n, term in enumerate(query.terms)]


def _analyse(query: Query, kind: Kind, indexed: Mapping[int, str]) -> _Plan:
    """Which terms are left to Python, and the indexed tags the SQL predicates read."""
    residual: list[int] = []
    tags: list[int] = []
    for n, compiled in enumerate(_compiled_terms(query, kind, indexed, instances.c.id)):
        if not compiled.exact:
            residual.append(n)
        if compiled.tag is not None:
            tags.append(compiled.tag)
    return _Plan(tuple(residual), tags)


def _params(query: Query, indexed: Mapping[int, str]) -> dict[str, Any]:
    """The values of the bind parameters of ``query``'s statements (names as :func:`_scope`,
    :func:`_paged` and compile_term's ``name`` give them)."""
    scope = query.scope
    params: dict[str, Any] = {
        "scope_study": scope.study,
        "scope_series": scope.series,
        "scope_instance": scope.instance,
        "page_offset": query.offset,
        "page_limit": None if query.limit is None else query.limit + 1,
    }
    for n, term in enumerate(query.terms):
        params.update(term_params(term, f"t{n}", indexed=indexed))
    return params


def _paged(statement: Any, query: Query) -> Any:
    if query.offset:
        statement = statement.offset(bindparam("page_offset", query.offset))
    if query.limit is not None:
        statement = statement.limit(bindparam("page_limit", query.limit + 1))
    return statement


class TooManyRows(Exception):
    """The page has more rows than the caller's ``max_rows`` (see :func:`search`)."""


def search(
    conn: Connection, query: Query, /, *, kind: Kind, indexed: Mapping[int, str], max_rows: int | None = None
) -> Page:
    """The page of entities at ``query.level`` under ``query.scope`` matching ``query.terms``.

    ``max_rows``: raise :class:`TooManyRows` rather than build a page of more rows (each row
    decodes its representative's metadata: a caller on the event loop bounds that work).
    """
    scope = query.scope
    if query.level == Level.STUDY and (scope.series is not None or scope.instance is not None):
        return Page([])
    if query.level == Level.SERIES and scope.instance is not None:
        return Page([])
    if query.limit == 0:
        return Page([], has_more=_any(conn, query, kind, indexed))

    plan = _plan(query, kind, indexed)
    residual = [query.terms[n] for n in plan.residual]
    pushed_tags = plan.tags
    checked = bool(residual) or bool(pushed_tags and _has_irregular(conn, pushed_tags))
    # (exact terms, but some instances hold values SQL cannot compare: residual stays empty
    # and _checked_ids re-checks just those instances against every term)
    if query.orderby and (checked or not _orders_in_sql(conn, query.orderby, indexed)):
        # Every match in the stable order (which the stable sort keeps for ties), then sorted.
        everything = msgspec.structs.replace(query, offset=0, limit=None, orderby=())
        if checked:
            ids = _checked_ids(conn, everything, kind, indexed, residual, pushed_tags)
        else:
            ids = _sql_ids(conn, everything, kind, indexed, None)
        ids = _ordered_in_python(conn, query.level, ids, query.orderby)
        end = None if query.limit is None else query.offset + query.limit + 1
        ids = ids[query.offset : end]
    elif checked:
        ids = _checked_ids(conn, query, kind, indexed, residual, pushed_tags)
    else:
        drive = query.level != Level.INSTANCE and not query.orderby and query.terms
        driven = _driven_ids(conn, query, kind, indexed, plan) if drive else None
        ids = driven if driven is not None else _sql_ids(conn, query, kind, indexed, plan)
    has_more = query.limit is not None and len(ids) > query.limit
    if has_more:
        ids = ids[: query.limit]
    if max_rows is not None and len(ids) > max_rows:
        raise TooManyRows
    return Page(_build_rows(conn, query.level, ids), has_more=has_more)


def _predicates(
    query: Query, kind: Kind, indexed: Mapping[int, str], instance_id: Any, *, with_irregular: bool
) -> list[ColumnElement[bool]]:
    out = []
    for n, term in enumerate(query.terms):
        compiled = compile_term(
            term,
            kind=kind,
            indexed=indexed,
            instance_id=instance_id,
            fuzzy=query.fuzzy,
            with_irregular=with_irregular,
            name=f"t{n}",
        )
        if compiled.where is not None:
            out.append(compiled.where)
    return out


@functools.cache
def _irregular_statement() -> Any:
    tags: BindParameter[Any] = bindparam("tags", expanding=True)
    return select(literal(1)).where(instance_values.c.irregular == true(), instance_values.c.tag.in_(tags)).limit(1)


def _has_irregular(conn: Connection, tags: list[int]) -> bool:
    return bool(fetch(conn, _irregular_statement(), {"tags": tags}))


def _scope(scope: ResourceKey) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if scope.study is not None:
        conditions.append(studies.c.study_uid == bindparam("scope_study", scope.study))
    if scope.series is not None:
        conditions.append(series.c.series_uid == bindparam("scope_series", scope.series))
    if scope.instance is not None:
        conditions.append(instances.c.instance_uid == bindparam("scope_instance", scope.instance))
    return conditions


def _entity_select(query: Query, kind: Kind, indexed: Mapping[int, str]) -> Any:
    """Entity ids in the result order, filtered by scope and the SQL predicates.

    Without ``orderby`` the stable order; with it (all keys indexed, see :func:`_orders_in_sql`)
    the sort values as correlated subqueries in a derived table, ordered NULLs last.
    """
    level, scope = query.level, query.scope
    inner = _INNER
    if level == Level.INSTANCE:
        stable: list[Any] = [instances.c.study_id, instances.c.series_id, instances.c.id]
        representative: Any = instances.c.id
        statement = (
            select(instances.c.id)
            .select_from(
                instances.join(series, series.c.id == instances.c.series_id).join(
                    studies, studies.c.id == instances.c.study_id
                )
            )
            .where(*_scope(scope), *_predicates(query, kind, indexed, instances.c.id, with_irregular=False))
        )
    else:
        predicates = _predicates(query, kind, indexed, inner.c.id, with_irregular=False)
        newest = _NEWEST
        if level == Level.SERIES:
            stable = [series.c.study_id, series.c.id]
            representative = select(func.max(newest.c.id)).where(newest.c.series_id == series.c.id).correlate(series)
            statement = (
                select(series.c.id)
                .select_from(series.join(studies, studies.c.id == series.c.study_id))
                .where(*_scope(scope))
            )
            if predicates:
                statement = statement.where(exists(select(1).where(inner.c.series_id == series.c.id, *predicates)))
        else:
            stable = [studies.c.id]
            representative = select(func.max(newest.c.id)).where(newest.c.study_id == studies.c.id).correlate(studies)
            statement = select(studies.c.id).where(*_scope(scope))
            if predicates:
                statement = statement.where(exists(select(1).where(inner.c.study_id == studies.c.id, *predicates)))
        representative = representative.scalar_subquery()
    if not query.orderby:
        return statement.order_by(*stable)
    names = [f"o{n}" for n in range(len(stable))]
    values = [_sort_value(key, representative).label(f"s{n}") for n, key in enumerate(query.orderby)]
    derived = statement.add_columns(
        *(column.label(name) for column, name in zip(stable, names, strict=True)), *values
    ).subquery("ordered")
    order: list[Any] = []
    for n, key in enumerate(query.orderby):
        value = derived.c[f"s{n}"]
        order += [value.is_(None), value.desc() if key.descending else value.asc()]
    first = derived.c[derived.c.keys()[0]]  # the entity id, the select's first column
    return select(first).order_by(*order, *(derived.c[name] for name in names))


def _sort_value(key: OrderKey, representative: Any) -> Any:
    """The sort value of ``key`` for the instance ``representative``, NULL if none (module docstring)."""
    v = instance_values.alias()
    where = [v.c.instance_id == representative, v.c.tag == key.tag, v.c.vidx == 0]
    if key.vr == "PN":  # the first non-empty group: Alphabetic, else Ideographic, else Phonetic
        return select(v.c.value).where(*where, v.c.value != "").order_by(v.c.grp).limit(1).scalar_subquery()
    return select(v.c.value_key).where(*where, v.c.grp == 0, v.c.value_key != "").scalar_subquery()


def _orders_in_sql(conn: Connection, orderby: Sequence[OrderKey], indexed: Mapping[int, str]) -> bool:
    """Can SQL sort by ``orderby``: every key indexed with its VR, and no irregular value of it?"""
    if any(indexed.get(key.tag) != key.vr for key in orderby):
        return False
    return not _has_irregular(conn, [key.tag for key in orderby])


def _ordered_in_python(conn: Connection, level: Level, ids: list[int], orderby: Sequence[OrderKey]) -> list[int]:
    """``ids`` (in the stable order) sorted by the core's :func:`~dicomweb_kit.sort_key` of
    their representative instances' stored metadata."""
    keys: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        if level == Level.INSTANCE:
            reps = {entity: entity for entity in chunk}
        else:
            link = instances.c.study_id if level == Level.STUDY else instances.c.series_id
            found = conn.execute(select(link, func.max(instances.c.id)).where(link.in_(chunk)).group_by(link))
            reps = {int(row[1]): int(row[0]) for row in found}
        for row in conn.execute(select(instances.c.id, instances.c.metadata).where(instances.c.id.in_(list(reps)))):
            keys[reps[int(row.id)]] = sort_key(_decode(row.metadata), orderby)
    missing = sort_key({}, orderby)  # an entity gone meanwhile: _build_rows drops it anyway
    return sorted(ids, key=lambda entity: keys.get(entity, missing))


def _sql_ids(conn: Connection, query: Query, kind: Kind, indexed: Mapping[int, str], plan: _Plan | None) -> list[int]:
    """The page's entity ids; ``plan``: the query's shape, whose statement is reused (``None``: build one)."""

    def build() -> Any:
        return _paged(_entity_select(query, kind, indexed), query)

    if plan is None:
        return [int(row[0]) for row in conn.execute(build(), _params(query, indexed)).all()]
    return [int(row[0]) for row in fetch(conn, plan.statement("entity", build), _params(query, indexed))]


_SEEK_ROWS: Final = 1000  # a "probe" driver matching fewer value rows reads the seek index


class _Driving(NamedTuple):
    """The driving term as a condition on one value row of ``_DRIVING``, and the other terms."""

    where: ColumnElement[bool]
    access: Access
    others: list[Any]


def _driving(query: Query, kind: Kind, indexed: Mapping[int, str]) -> _Driving | None:
    d = _DRIVING
    compiled = _compiled_terms(query, kind, indexed, d.c.instance_id)
    candidates = [item for item in compiled if item.driver is not None]
    if not candidates:
        return None
    rank = {"seek": 0, "probe": 1, "scan": 2}
    chosen = min(candidates, key=lambda item: rank[item.driver.access] if item.driver else 3)
    driver = chosen.driver
    assert driver is not None
    others = [item.where for item in compiled if item is not chosen and item.where is not None]
    return _Driving(driver.where(d), driver.access, others)


def _driven_ids(
    conn: Connection, query: Query, kind: Kind, indexed: Mapping[int, str], plan: _Plan
) -> list[int] | None:
    """Study/series ids of the page (SQL-only terms, stable order), read from the value rows.

    One term drives: its value rows carry their study and series, so the page is either
    ``GROUP BY study`` over the rows an index seek finds (few matches), or the attribute's
    rows in study order read until ``limit`` studies matched (many matches); the other terms
    are probes on the same instance. ``None``: no term can drive (the EXISTS form is used).
    """
    if "driving" not in plan.statements:
        plan.statements["driving"] = _driving(query, kind, indexed)
    driving: _Driving | None = plan.statements["driving"]
    if driving is None:
        return None
    params = _params(query, indexed)
    access = driving.access
    if access == "probe":

        def count() -> Any:
            probe = select(literal(1)).select_from(_DRIVING).where(driving.where).limit(_SEEK_ROWS).subquery()
            return select(func.count()).select_from(probe)

        [(found,)] = fetch(conn, plan.statement("probe", count), params)
        access = "seek" if int(found or 0) < _SEEK_ROWS else "scan"
    walk = access == "scan" and driving.access == "probe" and kind == "postgresql"  # a wide range

    def build() -> Any:
        if walk:
            return _paged(_walked(query, driving.where, driving.others), query)
        return _paged(_grouped(query, access, driving.where, driving.others), query)

    statement = plan.statement("walked" if walk else access, build)
    return [int(row[0]) for row in fetch(conn, statement, params)]


def _grouped(query: Query, access: str, driving: ColumnElement[bool], others: list[Any]) -> Any:
    """``GROUP BY`` the entity over the driving rows (in study order on SQLite's scan index)."""
    d = _DRIVING
    order = [d.c.study_id] if query.level == Level.STUDY else [d.c.study_id, d.c.series_id]
    statement = select(order[-1]).where(driving, *others)
    scope = query.scope
    if scope.study is not None:
        study = select(studies.c.id).where(studies.c.study_uid == bindparam("scope_study", scope.study))
        statement = statement.where(d.c.study_id == study.scalar_subquery())
    if scope.series is not None:
        in_series = select(series.c.id).where(series.c.series_uid == bindparam("scope_series", scope.series))
        statement = statement.where(d.c.series_id.in_(in_series))
    statement = statement.group_by(*order).order_by(*order)
    if access == "scan":
        statement = statement.with_hint(d, "INDEXED BY dwk_values_scan", "sqlite")
    return statement


def _walked(query: Query, driving: ColumnElement[bool], others: list[Any]) -> Any:
    """The entities in the stable order, each probed for ONE matching driving row (PostgreSQL).

    ``LATERAL (... LIMIT 1)`` cannot be flattened into a join, so the plan is a nested loop
    over the studies (series) primary/order index, stopping after ``limit+1`` hits, each probe
    a descent of ``dwk_values_scan`` (tag, study, series). The ``GROUP BY`` form leaves the
    choice to the row estimates, and without statistics (fresh bulk load, autovacuum behind)
    PostgreSQL reads and sorts every value row in range instead.
    """
    d = _DRIVING
    scope = query.scope
    if query.level == Level.STUDY:
        entity: Any = studies
        stable: list[Any] = [studies.c.id]
        link = [d.c.study_id == studies.c.id]
        where: list[Any] = [] if scope.study is None else [studies.c.study_uid == bindparam("scope_study", scope.study)]
    else:
        entity = series
        stable = [series.c.study_id, series.c.id]
        link = [d.c.study_id == series.c.study_id, d.c.series_id == series.c.id]
        where = []
        if scope.study is not None:
            study = select(studies.c.id).where(studies.c.study_uid == bindparam("scope_study", scope.study))
            where.append(series.c.study_id == study.scalar_subquery())
        if scope.series is not None:
            where.append(series.c.series_uid == bindparam("scope_series", scope.series))
    probe = select(literal(1).label("hit")).where(driving, *link, *others).limit(1).lateral("hit")
    return select(stable[-1]).select_from(entity.join(probe, true())).where(*where).order_by(*stable)


def _any(conn: Connection, query: Query, kind: Kind, indexed: Mapping[int, str]) -> bool:
    """``limit=0``: is there any row past ``offset``? (``has_more`` of an empty page)."""
    probe = msgspec.structs.replace(query, limit=1)
    return bool((search(conn, probe, kind=kind, indexed=indexed)).rows)


def _checked_ids(
    conn: Connection,
    query: Query,
    kind: Kind,
    indexed: Mapping[int, str],
    residual: list[Term],
    pushed_tags: list[int],
) -> list[int]:
    """Entity ids whose candidates pass the reference matcher, from ``offset``, at most limit+1."""
    level = query.level
    v = instance_values.alias()
    irregular: ColumnElement[bool] = (
        exists(select(1).where(v.c.instance_id == instances.c.id, v.c.irregular == true(), v.c.tag.in_(pushed_tags)))
        if pushed_tags
        else false()
    )
    base = (
        select(
            instances.c.id,
            instances.c.study_id,
            instances.c.series_id,
            instances.c.metadata,
            irregular.label("irregular"),
        )
        .select_from(
            instances.join(series, series.c.id == instances.c.series_id).join(
                studies, studies.c.id == instances.c.study_id
            )
        )
        .where(*_scope(query.scope), *_predicates(query, kind, indexed, instances.c.id, with_irregular=True))
        .order_by(instances.c.study_id, instances.c.series_id, instances.c.id)
        .limit(_BATCH)
    )
    wanted = None if query.limit is None else query.offset + query.limit + 1
    matched: list[int] = []
    last: tuple[int, int, int] | None = None
    while True:
        statement = base
        if last is not None:
            statement = statement.where(
                tuple_(instances.c.study_id, instances.c.series_id, instances.c.id) > tuple_(*last)
            )
        rows = (conn.execute(statement)).all()
        for row in rows:
            entity = row.study_id if level == Level.STUDY else row.series_id if level == Level.SERIES else row.id
            if matched and matched[-1] == entity:
                continue  # the entity already matched on an earlier instance
            terms = query.terms if row.irregular else residual
            if instance_matches(terms, _decode(row.metadata), fuzzy=query.fuzzy):
                matched.append(int(entity))
                if wanted is not None and len(matched) >= wanted:
                    return matched[query.offset :]
        if len(rows) < _BATCH:
            return matched[query.offset :]
        last = (rows[-1].study_id, rows[-1].series_id, rows[-1].id)


# --------------------------------------------------------------------------------------------
# Result rows
# --------------------------------------------------------------------------------------------


def _build_rows(conn: Connection, level: Level, ids: list[int]) -> list[MatchRow]:
    if not ids:
        return []
    found = {row.entity: row for row in fetch(conn, _rows_statement(level), {"ids": ids})}
    rows = [found[entity] for entity in ids if entity in found]
    # Kept on the study row; computed for the studies where it is not known (study_summary.py).
    unknown = sorted({row.study_id for row in rows if row.modalities is None or row.sop_classes is None})
    modalities, sop_classes = study_values(conn, unknown)
    out = []
    for row in rows:
        if level == Level.STUDY:
            key = ResourceKey(row.study_uid)
        elif level == Level.SERIES:
            key = ResourceKey(row.study_uid, row.series_uid)
        else:
            key = ResourceKey(row.study_uid, row.series_uid, row.instance_uid)
        out.append(
            MatchRow(
                level=level,
                key=key,
                attributes={} if row.metadata is None else _decode(row.metadata),
                study_series=int(row.num_series),
                study_instances=int(row.study_instances),
                series_instances=int(row.series_instances),
                modalities_in_study=(
                    decode_values(row.modalities)
                    if row.modalities is not None
                    else tuple(sorted(modalities.get(row.study_id, ())))
                ),
                sop_classes_in_study=(
                    decode_values(row.sop_classes)
                    if row.sop_classes is not None
                    else tuple(sorted(sop_classes.get(row.study_id, ())))
                ),
            )
        )
    return out


@functools.cache
def _rows_statement(level: Level) -> Any:
    """The result rows of the entities ``ids`` (an expanding parameter) at ``level``."""
    ids: BindParameter[Any] = bindparam("ids", expanding=True)
    if level == Level.STUDY:
        statement = select(
            studies.c.id.label("entity"),
            studies.c.id.label("study_id"),
            studies.c.study_uid,
            studies.c.num_series,
            studies.c.num_instances.label("study_instances"),
            literal(0).label("series_instances"),
            studies.c.modalities,
            studies.c.sop_classes,
        ).where(studies.c.id.in_(ids))
    elif level == Level.SERIES:
        statement = (
            select(
                series.c.id.label("entity"),
                studies.c.id.label("study_id"),
                studies.c.study_uid,
                series.c.series_uid,
                studies.c.num_series,
                studies.c.num_instances.label("study_instances"),
                series.c.num_instances.label("series_instances"),
                studies.c.modalities,
                studies.c.sop_classes,
            )
            .select_from(series.join(studies, studies.c.id == series.c.study_id))
            .where(series.c.id.in_(ids))
        )
    else:
        statement = (
            select(
                instances.c.id.label("entity"),
                studies.c.id.label("study_id"),
                studies.c.study_uid,
                series.c.series_uid,
                instances.c.instance_uid,
                studies.c.num_series,
                studies.c.num_instances.label("study_instances"),
                series.c.num_instances.label("series_instances"),
                instances.c.id.label("rep"),
                studies.c.modalities,
                studies.c.sop_classes,
            )
            .select_from(
                instances.join(series, series.c.id == instances.c.series_id).join(
                    studies, studies.c.id == instances.c.study_id
                )
            )
            .where(instances.c.id.in_(ids))
        )
    # The representative instance's metadata in the same statement: the newest instance of
    # each study/series (the study row keeps its id since version 8, else a correlated max()
    # over an (entity, id) index) read by primary key in a scalar subquery (a join to it lets
    # PostgreSQL hash-join every instance); the instance itself at instance level.
    if level == Level.INSTANCE:
        statement = statement.add_columns(instances.c.metadata)
    else:
        link = instances.c.study_id if level == Level.STUDY else instances.c.series_id
        owner = studies if level == Level.STUDY else series
        # (``id + 0`` at study level: no (study_id, id) index, and PostgreSQL's min/max
        # rewrite would walk the primary key backwards through other studies' instances)
        highest = instances.c.id + 0 if level == Level.STUDY else instances.c.id
        newest: Any = select(func.max(highest)).where(link == owner.c.id).correlate(owner).scalar_subquery()
        if level == Level.STUDY:
            newest = func.coalesce(studies.c.representative_id, newest)
        rep = _REPRESENTATIVE
        metadata = select(rep.c.metadata).where(rep.c.id == newest).correlate(owner).scalar_subquery()
        statement = statement.add_columns(metadata.label("metadata"))
    return statement
