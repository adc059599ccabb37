"""Development tooling, apart from the runtime package `imdb_assets`: the IMDb-format generator (`generator`)
behind the tests and benchmarks, and `make demo` (`demo`). The image and the wheel leave it out; nothing in
`imdb_assets` or `imdb_api` imports it.
"""
