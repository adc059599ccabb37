{#-
A SQL condition, true when a valid unique index (or primary key) of the relation guarantees that `columns` are
unique: on the relation itself, or, for a view, on the one table the view reads (its columns matched by name).
The uniqueness tests put it in their WHERE clause: PostgreSQL evaluates it once, before reading any row, so a
guaranteed key costs a catalog lookup, and a missing index (a dropped primary key) gets the full check.
-#}
{% macro unique_index_covers(model, columns) -%}
exists (
    with tested as (
        select to_regclass('{{ adapter.quote(model.schema) }}.{{ adapter.quote(model.identifier) }}') as relid
    ),
    base as (
        select tested.relid from tested
        union
        select depend.refobjid
        from tested
        inner join pg_catalog.pg_rewrite as rule on rule.ev_class = tested.relid
        inner join pg_catalog.pg_depend as depend
            on depend.classid = 'pg_catalog.pg_rewrite'::regclass
            and depend.objid = rule.oid
            and depend.refclassid = 'pg_catalog.pg_class'::regclass
            and depend.refobjid <> tested.relid
        where (
            select count(distinct other.refobjid)
            from pg_catalog.pg_depend as other
            where other.classid = 'pg_catalog.pg_rewrite'::regclass
                and other.objid = rule.oid
                and other.refclassid = 'pg_catalog.pg_class'::regclass
                and other.refobjid <> tested.relid
        ) = 1
    )
    select
    from base
    inner join pg_catalog.pg_index as ind on ind.indrelid = base.relid
    where ind.indisunique
        and ind.indisvalid
        and ind.indpred is null
        and ind.indexprs is null
        and ind.indnkeyatts = {{ columns | length }}
        and array(
            select att.attname::text
            from pg_catalog.pg_attribute as att
            where att.attrelid = ind.indrelid and att.attnum = any(ind.indkey::int2[])
            order by 1
        ) = array[{% for column in columns | sort %}'{{ column }}'{{ ", " if not loop.last }}{% endfor %}]::text[]
)
{%- endmacro %}
