{#-
Incremental marts: each one rebuilds only the keys that the change log (imdb_meta.changes, written by every load in
the transaction that changes its table) touched since the model last consumed it; docs/architecture.md has the
design. A model that follows the change log:

  - calls follow_change_log() first (it names the source, and decides this build's window and whether it is full);
  - is materialized 'incremental' with incremental_strategy 'touched_keys' and unique_key its key column;
  - lists in meta.change_tables the tables whose changes it follows (a 'reload' of one of them: a full build) and
    in meta.change_parents the incremental models it reads (a full build of one of them: a full build);
  - computes its touched keys in a pre-hook, create_touched_keys(<SQL of keys>), and filters its inputs by
    touched_only(<key column>), which is true on a full build.

Per model, imdb_meta.model_watermarks holds consumed_id (the change-log ids up to which it is built) and this
build's window: horizon_id, the last id the build consumes, and full_build. The window is fixed once per dbt
invocation, at the model's compile, under a SHARE lock of the change log held only for that statement: loads
writing the log are waited for, so every id up to the horizon is committed, and no id below it can appear later.
The post-hook moves consumed_id to the horizon in the build's own transaction.
-#}

{#- on-run-start: the models' state, beside the change log. -#}
{% macro create_change_tracking() -%}
    create schema if not exists imdb_meta;
    create table if not exists imdb_meta.model_watermarks (
        model text primary key,
        consumed_id bigint not null default 0,
        horizon_id bigint not null default 0,
        full_build boolean not null default true,
        invocation_id text,
        tables text[] not null default '{}',
        generation bigint not null default 0,
        parent_generations jsonb not null default '{}',
        pending_parent_generations jsonb not null default '{}',
        loads_seen timestamptz,
        pending_loads_seen timestamptz,
        built_at timestamptz
    );
    comment on table imdb_meta.model_watermarks is
        'Per incremental dbt model: the change-log ids it is built up to (consumed_id), the window of its current or '
        'last build (horizon_id, full_build), and how many full builds it had (generation).';
    create table if not exists imdb_meta.model_changes (
        model text not null,
        change_id bigint not null,
        key text collate "C" not null
    );
    comment on table imdb_meta.model_changes is
        'Keys an incremental model changed, tagged with the change-log horizon of its build, for the models reading '
        'it (title_people: the people whose credits it deleted or inserted).';
    create index if not exists model_changes_model_change_id_idx on imdb_meta.model_changes (model, change_id);
    create table if not exists imdb_meta.model_builds (
        model text not null,
        key text collate "C" not null
    );
    comment on table imdb_meta.model_builds is
        'The keys the last incremental build of each incremental model rebuilt: what its data tests check.';
    create index if not exists model_builds_model_key_idx on imdb_meta.model_builds (model, key);
{%- endmacro %}

{#- True when the model being built follows the change log (not in a unit test, which renders it on fixtures). -#}
{% macro _follows_change_log() -%}
    {{ return(execute and model.resource_type == 'model'
        and (config.get('meta') or {}).get('change_tables') is not none) }}
{%- endmacro %}

{#- Names the change log as the model's source (dbt's lineage; Dagster's translator leaves it out of the asset
    graph, as the tables' assets write it) and decides the build's window. -#}
{% macro follow_change_log() -%}
    {%- if model.resource_type != 'unit_test' -%}
        -- follows the change log, {{ source('imdb_meta', 'changes') }}
    {%- endif -%}
    {%- if _follows_change_log() %}{% do change_window() %}{% endif -%}
{%- endmacro %}

{#-
dbt's should_full_refresh(), which is_incremental() and the incremental materialization ask: for a model that
follows the change log, also true when the change window says so (first build, a 'reload', a parent rebuilt whole).
-#}
{% macro should_full_refresh() -%}
    {%- if _follows_change_log() -%}
        {{ return(change_window()['full']) }}
    {%- endif -%}
    {%- set config_full_refresh = config.get('full_refresh') -%}
    {%- if config_full_refresh is none -%}
        {%- set config_full_refresh = flags.FULL_REFRESH -%}
    {%- endif -%}
    {{ return(config_full_refresh) }}
{%- endmacro %}

{% macro _sql_texts(values) -%}
    array[{% for value in values %}'{{ value }}'{{ ", " if not loop.last }}{% endfor %}]::text[]
{%- endmacro %}

{#-
This invocation's window of the model: decided by the first call (at the model's compile), read back by the later
ones (the materialization's). Full when dbt runs with --full-refresh, when the model is one of the var
full_refresh_models (Dagster: models whose code changed), when its table does not exist, when a followed table was
reloaded within the window, when a parent model had a full build since this one last consumed it, or when a followed
table was loaded by a load that wrote nothing to the change log (a safety net: then nothing says what changed).
-#}
{% macro change_window() -%}
    {%- set name = this.identifier -%}
    {%- set meta = config.get('meta') or {} -%}
    {%- set tables = _sql_texts(meta.get('change_tables', [])) -%}
    {%- set parents = _sql_texts(meta.get('change_parents', [])) -%}
    {%- set tracked = run_query(
        "select to_regclass('imdb_meta.model_watermarks') is not null and to_regclass('imdb_meta.changes') is not null"
    ) -%}
    {%- if not tracked.rows[0][0] -%}
        {#- No change log or state yet (no load, or the linter's empty database): a full build, nothing recorded. -#}
        {{ return({'full': true}) }}
    {%- endif -%}
    {%- set decided = run_query(
        "select full_build from imdb_meta.model_watermarks where model = '" ~ name ~ "' and invocation_id = '"
        ~ invocation_id ~ "'"
    ) -%}
    {%- if decided.rows | length > 0 -%}
        {{ return({'full': decided.rows[0][0]}) }}
    {%- endif -%}
    {%- set existing = adapter.get_relation(this.database, this.schema, this.identifier) -%}
    {%- set forced = flags.FULL_REFRESH or config.get('full_refresh') or name in var('full_refresh_models', [])
        or existing is none -%}
    {%- set decide -%}
        begin;
        lock table imdb_meta.changes in share mode;
        with latest as (select coalesce(max(id), 0) as id from imdb_meta.changes),

        -- What the parents reflect: a parent is built up to the id before the first change of one of its tables
        -- that it has not consumed (a parent whose tables did not change since its build is up to date).
        parents as (
            select min(coalesce(
                (
                    select min(c.id) - 1 from imdb_meta.changes as c
                    where c.id > parent.consumed_id and c.table_name = any(parent.tables)
                ),
                latest.id
            )) as id
            from imdb_meta.model_watermarks as parent, latest
            where parent.model = any({{ parents }})
        )

        insert into imdb_meta.model_watermarks as w (
            model, horizon_id, full_build, invocation_id, tables, pending_parent_generations, pending_loads_seen
        )
        select
            '{{ name }}',
            greatest(
                coalesce((select consumed_id from imdb_meta.model_watermarks where model = '{{ name }}'), 0),
                least(latest.id, parents.id)
            ),
            true,
            '{{ invocation_id }}',
            {{ tables }},
            (
                select coalesce(jsonb_object_agg(model, generation), '{}')
                from imdb_meta.model_watermarks where model = any({{ parents }})
            ),
            (select max(loaded_at) from imdb_meta.loads where table_name = any({{ tables }}))
        from latest, parents
        on conflict (model) do update set
            horizon_id = excluded.horizon_id,
            invocation_id = excluded.invocation_id,
            tables = excluded.tables,
            pending_parent_generations = excluded.pending_parent_generations,
            pending_loads_seen = excluded.pending_loads_seen,
            full_build = {{ 'true' if forced else 'false' }}
                or w.parent_generations is distinct from excluded.pending_parent_generations
                or exists (
                    select from imdb_meta.changes as c
                    where c.id > w.consumed_id and c.id <= excluded.horizon_id
                        and c.change = 'reload' and c.table_name = any({{ tables }})
                )
                or exists (
                    select from imdb_meta.loads as l
                    where l.table_name = any({{ tables }})
                        and l.loaded_at > coalesce(w.loads_seen, '-infinity')
                        and not exists (
                            select from imdb_meta.changes as c
                            where c.id > w.consumed_id and c.table_name = l.table_name
                                and c.recorded_at = l.loaded_at
                        )
                );
        commit;
        begin;
        select full_build from imdb_meta.model_watermarks where model = '{{ name }}'
    {%- endset -%}
    {#- In a transaction of its own, whatever the connection's state: the lock is released by its commit, before the
        build takes any other lock, and the build's statements run in a transaction again, as dbt expects. -#}
    {%- set result = run_query(decide) -%}
    {{ return({'full': result.rows[0][0]}) }}
{%- endmacro %}

{#- post-hook: the build consumed its window, and rebuilt these keys, in its own transaction. -#}
{% macro record_change_watermark() -%}
    {%- if _follows_change_log() -%}
        delete from imdb_meta.model_builds where model = '{{ this.identifier }}';
        {% if is_incremental() -%}
            insert into imdb_meta.model_builds (model, key)
            select '{{ this.identifier }}', touched.key from {{ touched_relation() }} as touched;
        {%- endif %}
        update imdb_meta.model_watermarks set
            consumed_id = horizon_id,
            generation = generation + (case when full_build then 1 else 0 end),
            parent_generations = pending_parent_generations,
            loads_seen = pending_loads_seen,
            built_at = now()
        where model = '{{ this.identifier }}'
    {%- else -%}
        select 'follows no change log'
    {%- endif -%}
{%- endmacro %}

{#- The keys of `table` (position `position` of the catalog's key) changed within the model's window. -#}
{% macro changed_keys(table, position=1) -%}
    select c.key[{{ position }}]
    from {{ source('imdb_meta', 'changes') }} as c
    inner join imdb_meta.model_watermarks as w on w.model = '{{ this.identifier }}'
    where c.id > w.consumed_id and c.id <= w.horizon_id and c.table_name = '{{ table }}'
{%- endmacro %}

{#- The keys model `source_model` logged (imdb_meta.model_changes) within this model's window. -#}
{% macro logged_keys(source_model) -%}
    select m.key
    from imdb_meta.model_changes as m
    inner join imdb_meta.model_watermarks as w on w.model = '{{ this.identifier }}'
    where m.model = '{{ source_model }}' and m.change_id > w.consumed_id and m.change_id <= w.horizon_id
{%- endmacro %}

{% macro touched_relation() -%}
    pg_temp."{{ this.identifier }}__touched"
{%- endmacro %}

{#- pre-hook: the keys this build rebuilds, as a temporary table of the build's transaction. -#}
{% macro create_touched_keys(touched_sql) -%}
    {%- if is_incremental() -%}
        create temporary table {{ touched_relation() }} on commit drop as
        select distinct touched.key from ({{ touched_sql }}) as touched (key) where touched.key is not null;
        analyze {{ touched_relation() }}
    {%- else -%}
        select 'a full build: every key'
    {%- endif -%}
{%- endmacro %}

{#- A filter of the model's inputs: the touched keys on an incremental build, everything on a full one. -#}
{% macro touched_only(column) -%}
    {%- if is_incremental() -%}
        {{ column }} in (select touched.key from {{ touched_relation() }} as touched)
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#-
The 'touched_keys' incremental strategy: every row of a touched key is deleted, then the rows the model computed for
those keys inserted, so a key whose rows are gone (a deleted title) disappears. dbt's delete+insert deletes only the
keys of the new rows.
-#}
{% macro get_incremental_touched_keys_sql(arg_dict) -%}
    {%- set key = config.get('unique_key') -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ arg_dict['target_relation'] }}
    where {{ key }} in (select touched.key from {{ touched_relation() }} as touched);
    insert into {{ arg_dict['target_relation'] }} ({{ columns }})
    select {{ columns }} from {{ arg_dict['temp_relation'] }}
{%- endmacro %}

{#- A hook's `statement` on a full build only (an index, say); an incremental build keeps what the table has. -#}
{% macro on_full_build(statement) -%}
    {%- if is_incremental() -%}
        select 'an incremental build: the table keeps what it has'
    {%- else -%}
        {{ statement }}
    {%- endif -%}
{%- endmacro %}

{#- post-hook: statistics after a full build; a few changed keys leave them as they were (autovacuum follows). -#}
{% macro analyze_if_rebuilt() -%}
    {%- if is_incremental() -%}
        select 'an incremental build: statistics kept'
    {%- else -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}

{#-
The rows a data test reads: dbt's `where` config, and for a model built from the change log whose last build was
incremental, only the keys that build rebuilt (the others were tested when they were built; a full build tests
every row). The uniqueness tests read the relation itself, whose unique index they look for.
-#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set filters = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}{%- do filters.append(where) -%}{%- endif -%}
    {%- set test_name = (model.get('test_metadata') or {}).get('name') -%}
    {%- if execute and test_name not in ('unique', 'unique_combination_of_columns') -%}
        {%- set key = _last_build_key(relation) -%}
        {%- if key -%}
            {%- do filters.append(key ~ " in (select built.key from imdb_meta.model_builds as built where built.model = '"
                ~ relation.identifier ~ "')") -%}
        {%- endif -%}
    {%- endif -%}
    {%- if filters -%}
        {%- do return("(select * from " ~ relation ~ " where " ~ filters | join(" and ") ~ ") dbt_subquery") -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{#- The key column of `relation` when it is a model following the change log whose last build was incremental. -#}
{% macro _last_build_key(relation) -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.name == relation.identifier
        and node.schema == relation.schema and (node.config.meta or {}).get('change_tables') is not none -%}
        {%- set last = run_query(
            "select exists (select from pg_class where oid = to_regclass('imdb_meta.model_builds'))"
            ~ " and exists (select from imdb_meta.model_watermarks where model = '" ~ node.name
            ~ "' and not full_build)"
        ) if execute else none -%}
        {%- if last is not none and last.rows[0][0] -%}
            {{ return(node.config.unique_key) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}
