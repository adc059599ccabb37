{#- imdb_marts.search_text(text): what the search marts index and what the API folds a query with, so both sides
    fold alike: lower case, accents stripped (NFKD, then the combining marks dropped). Without `unaccent` (the
    embedded server has none) this is the portable way; on a server whose encoding is not UTF8 it only lowers. -#}
{% macro create_search_text_function() -%}
    {%- set schema = generate_schema_name('imdb_marts', none) -%}
    {%- set utf8 = run_query("select pg_encoding_to_char(encoding) = 'UTF8' from pg_database where datname = current_database()") -%}
    {#- Most names are ASCII, which only needs lower(): normalize() and the regexp cost ten times as much. -#}
    {%- set fold = "case when octet_length(value) = length(value) then lower(value)"
        ~ " else regexp_replace(normalize(lower(value), NFKD), '[\\u0300-\\u036f]', '', 'g') end"
        if (execute and utf8.columns[0].values()[0]) else "lower(value)" -%}
    create schema if not exists {{ schema }};
    create or replace function {{ schema }}.search_text(value text) returns text
        language sql immutable strict parallel safe
        return {{ fold }};
{%- endmacro %}

{#- Where the server has pg_trgm and this role may install it (a trusted extension since PostgreSQL 13), the search
    marts also get trigram indexes, and the API answers a query with a typo by similarity. -#}
{% macro enable_trigram_search() -%}
    {%- set allowed = run_query(
        "select exists (select 1 from pg_available_extension_versions where name = 'pg_trgm'"
        " and (trusted or (select rolsuper from pg_roles where rolname = current_user)))"
        " and has_database_privilege(current_database(), 'CREATE')"
    ) -%}
    {%- if execute and allowed.columns[0].values()[0] -%}
        create extension if not exists pg_trgm schema {{ generate_schema_name('imdb_marts', none) }}
    {%- else -%}
        select 'pg_trgm is not available: search without typo tolerance'
    {%- endif -%}
{%- endmacro %}

{#- A trigram index on the folded `column` when pg_trgm is installed (in whichever schema), else nothing. -#}
{% macro trigram_index(column) -%}
    {%- set found = run_query("select extnamespace::regnamespace::text from pg_extension where extname = 'pg_trgm'") -%}
    {%- if execute and found.rows | length > 0 -%}
        create index on {{ this }} using gin (imdb_marts.search_text({{ column }}) {{ found.columns[0].values()[0] }}.gin_trgm_ops)
    {%- else -%}
        select 'no trigram index: pg_trgm is not installed'
    {%- endif -%}
{%- endmacro %}
