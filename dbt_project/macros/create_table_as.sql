{#-
dbt-postgres's create_table_as, except that a table with an enforced contract and no constraints is still built by
CREATE TABLE AS. The adapter's contract path (CREATE TABLE with the declared columns, then INSERT ... SELECT) never
runs its SELECT in parallel and gives every text column the default collation; here the contract's check that the
query's column names and types are the declared ones still runs first, the columns come in the declared order, and
a model with constraints (which CREATE TABLE AS cannot declare) takes the adapter's own path.
-#}
{% macro postgres__create_table_as(temporary, relation, sql) -%}
  {%- set contract_config = config.get('contract') -%}
  {%- if contract_config.enforced and not temporary and not _has_constraints() -%}
    {%- set sql_header = config.get('sql_header', none) -%}
    {{ sql_header if sql_header is not none }}
    {{ get_assert_columns_equivalent(sql) }}
    create {% if config.get('unlogged', default=false) %}unlogged {% endif %}table {{ relation }} as (
      {{ get_select_subquery(sql) }}
    );
  {%- else -%}
    {{ dbt.postgres__create_table_as(temporary, relation, sql) }}
  {%- endif -%}
{%- endmacro %}

{% macro _has_constraints() -%}
  {%- set columns_with_constraints = model['columns'].values() | selectattr('constraints') | list -%}
  {{ return((model.get('constraints') or columns_with_constraints) | length > 0) }}
{%- endmacro %}
