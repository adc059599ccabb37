{#- imdb_marts.search_text(text): what the search marts index and what the API folds a query with, so both sides
    fold alike: lower case, accents stripped (NFKD, then the combining marks dropped). Without `unaccent` (the
    embedded server has none) this is the portable way; on a server whose encoding is not UTF8 it only lowers. -#}
{% macro create_search_text_function() -%}
    {%- set schema = generate_schema_name('imdb_marts', none) -%}
    {%- set utf8 = run_query("select pg_encoding_to_char(encoding) = 'UTF8' from pg_database where datname = current_database()") -%}
    {%- set fold = "regexp_replace(normalize(lower(value), NFKD), '[\\u0300-\\u036f]', '', 'g')"
        if (execute and utf8.columns[0].values()[0]) else "lower(value)" -%}
    create schema if not exists {{ schema }};
    create or replace function {{ schema }}.search_text(value text) returns text
        language sql immutable strict parallel safe
        return {{ fold }};
{%- endmacro %}
