{#- dbt's built-in unique test, free when a unique index already guarantees it (see unique_index_covers). -#}
{% test unique(model, column_name) %}
select {{ column_name }} as unique_field, count(*) as n_records
from {{ model }}
where {{ column_name }} is not null and not {{ unique_index_covers(model, [column_name]) }}
group by {{ column_name }}
having count(*) > 1
{% endtest %}
