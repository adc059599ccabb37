"""The API's routes, one module per concern, each with its own ``router``; `imdb_api.app` includes them all."""
