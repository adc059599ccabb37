{#-
What each incremental model rebuilds: the keys its inputs' changes touch (the change window's, see change_log.sql).
Each is the SQL of one text column, for create_touched_keys().
-#}

{#- Titles by tconst: their own rows' changes, episodes of a series retitled, titles crediting a person whose name
    changed or who was added or removed (their director and writer names). -#}
{% macro touched_titles() -%}
    {{ changed_keys('title_basics') }}
    union all {{ changed_keys('title_ratings') }}
    union all {{ changed_keys('title_crew') }}
    union all {{ changed_keys('title_episode') }}
    union all
    select episode.tconst from {{ ref('stg_imdb__title_episode') }} as episode
    where episode.series_tconst in ({{ changed_keys('title_basics') }})
    union all
    {{ titles_crediting_changed_people(principals=false) }}
{%- endmacro %}

{#- Titles whose crew (and with `principals`, principal cast) names a person of name.basics changed in the window. -#}
{% macro titles_crediting_changed_people(principals=true) -%}
    select crew.tconst
    from {{ ref('stg_imdb__title_crew') }} as crew,
        (select array({{ changed_keys('name_basics') }}) as nconsts) as changed
    where cardinality(changed.nconsts) > 0
        and (crew.directors && changed.nconsts or crew.writers && changed.nconsts)
    {%- if principals %}
    union all
    select principal.tconst from {{ ref('stg_imdb__title_principals') }} as principal
    where principal.nconst in ({{ changed_keys('name_basics') }})
    {%- endif %}
{%- endmacro %}

{#- Credits by tconst: the title's own rows in the three credit tables, and titles crediting a person added or
    removed (a credit of a person IMDb does not list is left out). -#}
{% macro touched_title_people() -%}
    {{ changed_keys('title_basics') }}
    union all {{ changed_keys('title_crew') }}
    union all {{ changed_keys('title_principals') }}
    union all
    {{ titles_crediting_changed_people(principals=true) }}
{%- endmacro %}

{#- People by nconst: their own rows, everyone whose credits title_people deleted or inserted (logged by it with
    the person's id), and people known for a title whose name changed (found in `people`, a relation with nconst
    and known_for_tconsts). -#}
{% macro touched_people(people) -%}
    {{ changed_keys('name_basics') }}
    union all {{ logged_keys('title_people') }}
    union all
    select person.nconst
    from {{ people }} as person,
        (select array({{ changed_keys('title_basics') }}) as tconsts) as changed
    where cardinality(changed.tconsts) > 0 and person.known_for_tconsts && changed.tconsts
{%- endmacro %}

{#- Seasons by series: the series of every episode changed (its row, title or rating), before and after the change,
    and series retitled. -#}
{% macro touched_series() -%}
    with episodes as (
        {{ changed_keys('title_episode') }}
        union all {{ changed_keys('title_basics') }}
        union all {{ changed_keys('title_ratings') }}
    )
    select episode.series_tconst from {{ ref('stg_imdb__title_episode') }} as episode
    where episode.tconst in (select * from episodes)
    union all
    select built.series_tconst from {{ this }} as built
    where built.episode_tconst in (select * from episodes)
    union all
    select * from episodes
{%- endmacro %}

{#- Search documents by tconst: the title's row, rating or akas. -#}
{% macro touched_title_search() -%}
    {{ changed_keys('title_basics') }}
    union all {{ changed_keys('title_ratings') }}
    union all {{ changed_keys('title_akas') }}
{%- endmacro %}

{#- title_people's log for the models reading it: the people of the touched titles' credits, before its build
    (`when` 'before', in a pre-hook) or after it ('after', in a post-hook). A full build empties the log: the models
    reading it then build whole too (its generation changed). -#}
{% macro log_title_people(when) -%}
    {%- if not is_incremental() -%}
        {%- if when == 'before' -%}
            delete from imdb_meta.model_changes where model = '{{ this.identifier }}'
        {%- else -%}
            select 'a full build: nothing to log'
        {%- endif -%}
    {%- else -%}
        insert into imdb_meta.model_changes (model, change_id, key)
        select distinct '{{ this.identifier }}', w.horizon_id, credit.nconst
        from {{ this }} as credit
        inner join imdb_meta.model_watermarks as w on w.model = '{{ this.identifier }}'
        where {{ touched_only('credit.tconst') }}
    {%- endif -%}
{%- endmacro %}
