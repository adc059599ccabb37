"""Development tooling, apart from the runtime package `imdb_assets`: the IMDb-format generator (`generator`)
behind the tests and benchmarks, `make demo` (`demo`), and a local S3 server (`s3_server`, moto's). The image and
the wheel leave it out; nothing in `imdb_assets` or `imdb_api` imports it.
"""
