"""The dbt models as assets downstream of the seven tables, their tests as asset checks.

- `project`: the dbt project as dagster-dbt sees it (what `make prepare` parses)
- `translator`: asset keys, groups and code versions of the models
- `staleness`: which selected models a step rebuilds, by Dagster's record of what each was built from
- `assets`: the models' multi-asset step and what its materializations show
- `sources`: the project's sources file, generated from the catalog
"""
