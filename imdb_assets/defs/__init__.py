"""The code location's definitions, one module per concern, merged by `imdb_assets.definitions`:

- `files`: the three assets of each IMDb file (`raw/<table>`, `parsed/<table>`, `imdb/<table>`)
- `dbt`: the dbt models as assets, their tests as asset checks
- `jobs`: `imdb_refresh` and the executor its steps run in
- `sensors`: the release sensor
- `resources`: the resources the assets and the sensor use, configured from the environment contract
"""
