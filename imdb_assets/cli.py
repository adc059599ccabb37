"""`imdb`: the platform from a shell, outside Dagster.

uv run imdb psql                 # psql on the platform's database, embedded or not
uv run imdb dbt build -s marts   # dbt against the platform's database
uv run imdb prepare              # parse the dbt project into the manifest the definitions load
uv run imdb settings             # every variable: its value here, its default and what it means
uv run imdb url                  # the database's URI, for other tools
uv run imdb db-stop              # stop the embedded PostgreSQL
uv run imdb churn OLD NEW        # rows inserted, changed and deleted per file between two releases' folders
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

from imdb_assets import churn, database, dbt, settings
from imdb_assets.parse import ParseError

PROJECT_MODULE = "imdb_assets/defs/dbt/project.py"


def _psql(config: settings.Settings, args: list[str]) -> int:
    url = config.database()
    # The embedded server ships its own psql; a server of the user's is reached with theirs, if they have one.
    psql = shutil.which("psql") if config.database_url else None
    command = [psql or database.psql_path(), url, *args]
    os.execv(command[0], command)


def _dbt(config: settings.Settings, args: list[str]) -> int:
    environment = os.environ | dbt.environment(config, config.database())
    project_dir = str(dbt.PROJECT_DIR)
    environment |= {"DBT_PROJECT_DIR": project_dir, "DBT_PROFILES_DIR": project_dir}
    return subprocess.call([sys.executable, "-m", "dbt.cli.main", *args], env=environment, cwd=project_dir)


def _prepare(config: settings.Settings, args: list[str]) -> int:
    project = str(dbt.PROJECT_DIR.parent / PROJECT_MODULE)
    dagster_dbt = shutil.which("dagster-dbt", path=os.path.dirname(sys.executable)) or "dagster-dbt"
    status = subprocess.call([dagster_dbt, "project", "prepare-and-package", "--file", project, *args])
    if status == 0:
        dbt.record_prepared()
    return status


def _settings(config: settings.Settings, args: list[str]) -> int:
    for field, description in zip(settings.Settings.model_fields, settings.ENVIRONMENT.values(), strict=True):
        print(f"{settings.variable_name(field)}={_shown(field, getattr(config, field))}\n    {description}")
    return 0


def _shown(field: str, value: object) -> str:
    """A setting's value as it may be printed: passwords hidden, in URIs too."""
    if value is None:
        return "(unset)"
    if field.endswith("password"):
        return "(set)"
    password = urlsplit(str(value)).password if field.endswith("database_url") else None
    return str(value).replace(f":{password}@", ":***@", 1) if password else str(value)


def _url(config: settings.Settings, args: list[str]) -> int:
    print(config.database())
    return 0


def _db_stop(config: settings.Settings, args: list[str]) -> int:
    database.stop_embedded_server(config.data_folder("the embedded server"))
    return 0


def _churn(config: settings.Settings, args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="imdb churn", description="Rows inserted, changed and deleted per IMDb file between two releases."
    )
    parser.add_argument("old", type=Path, help="folder of the earlier release's .tsv.gz files")
    parser.add_argument("new", type=Path, help="folder of the later release's .tsv.gz files")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON, one object per file")
    options = parser.parse_args(args)
    try:
        results = churn.measure(options.old, options.new)
    except (FileNotFoundError, ParseError) as error:
        print(f"imdb churn: {error}", file=sys.stderr)
        return 2
    if options.json:
        print(json.dumps([asdict(r) | {"share_changed": r.share_changed} for r in results], indent=1))
    else:
        print(churn.table(results))
    return 0


COMMANDS = {
    "psql": (_psql, "psql on the platform's database (arguments go to psql)"),
    "dbt": (_dbt, "dbt against the platform's database (arguments go to dbt)"),
    "prepare": (_prepare, "parse dbt_project/ into the manifest the definitions load"),
    "settings": (_settings, "each setting's variable, value here and meaning"),
    "url": (_url, "print the platform database's URI"),
    "db-stop": (_db_stop, "stop the embedded PostgreSQL, if it runs"),
    "churn": (_churn, "rows inserted, changed and deleted per file between two releases (OLD NEW [--json])"),
}
# Commands whose arguments are parsed further on: by psql, by dbt, by dagster-dbt, or by the command itself.
PASSES_ARGUMENTS = ("psql", "dbt", "prepare", "churn")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="imdb", description="The IMDb asset platform from a shell.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=name not in ("psql", "dbt", "churn"))
    known, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        config = settings.load()
    except settings.SettingsError as error:
        parser.exit(2, f"imdb: {error}\n")
    run, _ = COMMANDS[known.command]
    if rest and known.command not in PASSES_ARGUMENTS:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    sys.exit(run(config, rest))


if __name__ == "__main__":
    main()
