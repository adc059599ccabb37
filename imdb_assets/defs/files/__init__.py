"""IMDb's seven files as assets: `raw/<table>` -> `parsed/<table>` -> `imdb/<table>`, one chain per file.

- `keys`: the three layers' asset keys
- `assets`: the step that downloads, parses and loads a file
- `sensor`: the release sensor, which refreshes the files that changed
"""
