"""sqlfluff on the dbt project, offline: `uv run python -m imdb_dev.lint_sql lint dbt_project` (part of `make lint`).

sqlfluff's dbt templater fills dbt's relation cache before it compiles the first model, one query per schema, so it
needs a PostgreSQL it can connect to, although no model reads the database to compile. This starts an empty server
of the pgserver wheel in a temporary folder, points the variables `dbt_project/profiles.yml` reads at it (never at
the platform's database), runs sqlfluff with the arguments given, then stops and deletes the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    import pgserver


def main(argv: list[str]) -> int:
    with (
        tempfile.TemporaryDirectory(prefix="imdb-sqlfluff-") as folder,
        pgserver.get_server(Path(folder) / "postgres", cleanup_mode="delete") as server,
    ):
        parts = conninfo_to_dict(server.get_uri())
        # Every variable set, so that none exported in the shell (an operator's server) reaches the templater.
        env = os.environ | {
            "IMDB_DBT_HOST": str(parts["host"]),
            "IMDB_DBT_PORT": str(parts.get("port") or 5432),
            "IMDB_DBT_USER": str(parts["user"]),
            "IMDB_DBT_PASSWORD": "",
            "IMDB_DBT_DBNAME": str(parts["dbname"]),
            "IMDB_DBT_SSLMODE": "disable",
        }
        return subprocess.call([sys.executable, "-m", "sqlfluff", *argv], env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
