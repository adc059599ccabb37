{% test unique_combination_of_columns(model, combination_of_columns) %}
select {{ combination_of_columns | join(', ') }}, count(*) as occurrences
from {{ model }}
where not {{ unique_index_covers(model, combination_of_columns) }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1
{% endtest %}
