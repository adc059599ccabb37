"""Three software-defined assets per IMDb file, all generated from the catalog:

raw file (`raw/<table>`) -> parsed frame (`parsed/<table>`) -> PostgreSQL table (`imdb/<table>`).

One step per file materializes its three assets (or the subset a run selects), so a refresh pays one step's start
per file, not three, while the UI still shows each layer as an asset of its own. Work is only done for what
changed: an unchanged file is not downloaded (conditional GET), its Parquet is reused and its table kept
(`reloaded: false`). Each layer's data version is the raw file's sha256, so an unchanged file leaves every
downstream dbt model fresh in Dagster's eyes (see `imdb_assets.defs.dbt.staleness`). Release order is kept: a
release dated before the one the platform holds is refused by the download, before the local copy is touched, and
again by the load (`imdb_assets.release`). Before it writes, a step estimates the disk it needs and is refused,
having changed nothing, when the disk cannot hold it (`imdb_assets.disk`): the estimate comes before the download,
so it counts the file as changed.
"""

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Config,
    DataVersion,
    Definitions,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
    multi_asset,
)

from imdb_assets import disk, download, history, load, parse, release, storage
from imdb_assets.catalog import DATASETS, SCHEMA, Dataset
from imdb_assets.defs import metadata
from imdb_assets.defs.files.keys import HISTORY_KEY, VERSION_KEY, parsed_key, raw_key, table_key
from imdb_assets.defs.resources import DataStore, ImdbSource, Warehouse

RAW_GROUP, PARSED_GROUP, TABLE_GROUP = "raw_files", "parsed_frames", "imdb_tables"
# Code versions: bump one when its layer's output changes for the same input, so Dagster marks what is downstream
# of it stale.
RAW_CODE_VERSION, PARSED_CODE_VERSION, TABLE_CODE_VERSION = "1", "1", "1"


class FileRefreshConfig(Config):
    force: bool = False
    """Download even when the server says the file is unchanged."""
    allow_older_release: bool = False
    """Take a release dated before the one loaded (a deliberate rollback); otherwise it is refused."""


def column_schema(dataset: Dataset) -> TableSchema:
    keys = set(dataset.primary_key)
    return TableSchema(
        columns=[
            TableColumn(
                name=c.name,
                type=c.sql_type,
                description=c.description,
                constraints=TableColumnConstraints(
                    nullable=c.name not in keys, unique=(c.name,) == dataset.primary_key
                ),
            )
            for c in dataset.columns
        ]
    )


def _source(url: str, last_modified: str) -> dict:
    """Where the data came from, on every layer: the file's URL and the Last-Modified its server sent."""
    return {"source_url": MetadataValue.url(url), "source_last_modified": MetadataValue.text(last_modified)}


def file_specs(dataset: Dataset) -> list[AssetSpec]:
    file_description = f"IMDb's {dataset.file_name}: {dataset.description}"
    return [
        AssetSpec(
            raw_key(dataset),
            group_name=RAW_GROUP,
            kinds={"file"},
            description=f"{file_description} Downloaded only when it changed, verified as a complete gzip.",
            metadata={"file_name": dataset.file_name},
            code_version=RAW_CODE_VERSION,
        ),
        AssetSpec(
            parsed_key(dataset),
            deps=[raw_key(dataset)],
            group_name=PARSED_GROUP,
            kinds={"polars", "parquet"},
            description=f"{file_description} Typed by Polars into Parquet; malformed lines go to a rejects file.",
            code_version=PARSED_CODE_VERSION,
        ),
        AssetSpec(
            table_key(dataset),
            deps=[parsed_key(dataset)],
            group_name=TABLE_GROUP,
            kinds={"postgres"},
            description=f"{file_description} Table {SCHEMA}.{dataset.table}: ADBC bulk load, atomic swap.",
            metadata={
                "dagster/table_name": f"{SCHEMA}.{dataset.table}",
                "dagster/column_schema": column_schema(dataset),
            },
            code_version=TABLE_CODE_VERSION,
        ),
        *([_history_spec(dataset)] if dataset.table == history.RATINGS_TABLE else []),
    ]


def _history_spec(ratings: Dataset) -> AssetSpec:
    return AssetSpec(
        HISTORY_KEY,
        deps=[table_key(ratings)],
        group_name=TABLE_GROUP,
        kinds={"postgres"},
        description=f"Table {SCHEMA}.{history.HISTORY_TABLE}: {history.HISTORY_COMMENT} Appended by each load of "
        f"{ratings.file_name}, in the transaction that changes {SCHEMA}.{ratings.table}; never rewritten.",
        metadata={"dagster/table_name": f"{SCHEMA}.{history.HISTORY_TABLE}"},
        code_version=TABLE_CODE_VERSION,
    )


def _held_release(dataset: Dataset, store: DataStore, warehouse: Warehouse) -> str | None:
    """The Last-Modified of the newest release the platform holds of this file: the loaded table's or the local
    copy's (a copy downloaded but not yet loaded counts, so that it is not replaced by an older one either)."""
    with warehouse.connect() as conn:
        loaded = load.current_load(conn, dataset)
    copy = download.LocalCopy.read(store.raw_path(dataset))
    return release.newest(loaded.source_last_modified if loaded else None, copy.version.modified if copy else None)


def _download(
    context: AssetExecutionContext,
    dataset: Dataset,
    config: FileRefreshConfig,
    source: ImdbSource,
    store: DataStore,
    warehouse: Warehouse,
) -> MaterializeResult:
    url = source.url(dataset)
    path = store.raw_path(dataset)
    result = download.download(
        url,
        path,
        force=config.force,
        not_older_than=None if config.allow_older_release else _held_release(dataset, store, warehouse),
        timeout=source.timeout_seconds,
        max_attempts=source.max_attempts,
        backoff_seconds=source.backoff_seconds,
        log=context.log,
    )
    copy = result.copy
    if result.changed:
        context.log.info(f"{dataset.file_name}: {copy.bytes:,} bytes in {result.seconds:.1f}s")
    else:
        context.log.info(f"{dataset.file_name} unchanged since {copy.version.key()}: keeping the local copy")
    return MaterializeResult(
        asset_key=raw_key(dataset),
        metadata={
            **_source(copy.url, copy.version.modified),
            "path": MetadataValue.path(str(path)),
            "downloaded": result.changed,
            "bytes": copy.bytes,
            "uncompressed_bytes": copy.uncompressed_bytes,
            "etag": copy.version.etag or "",
            VERSION_KEY: copy.version.key(),
            "sha256": copy.sha256,
            "seconds": round(result.seconds, 3),
            "mb_per_s": round(result.mb_per_s, 2),
        },
        data_version=DataVersion(copy.sha256),
    )


def _parse(context: AssetExecutionContext, dataset: Dataset, store: DataStore) -> MaterializeResult:
    raw = store.raw_path(dataset)
    copy = download.LocalCopy.read(raw)
    if copy is None:
        raise FileNotFoundError(f"{raw} has not been downloaded yet: materialize {raw_key(dataset).to_user_string()}")
    parquet = store.parquet_path(dataset)
    previous = parse.ParseResult.read(parquet)
    if previous is not None and previous.source_sha256 == copy.sha256:
        context.log.info(f"{parquet.name} is already parsed from this copy of {dataset.file_name}; reusing it")
        reused, result = True, previous
    else:
        reused = False
        result = parse.parse_file(
            dataset,
            raw,
            parquet,
            store.rejects_path(dataset),
            source_sha256=copy.sha256,
            source_url=copy.url,
            source_last_modified=copy.version.modified,
            max_reject_fraction=store.max_reject_fraction,
            log=context.log,
        )
    return MaterializeResult(
        asset_key=parsed_key(dataset),
        metadata={
            "dagster/row_count": result.rows,
            "reused": reused,
            "rejects": result.rejects,
            "reject_fraction": result.reject_fraction,
            "reject_reasons": MetadataValue.json(result.reject_reasons),
            "rejects_path": MetadataValue.path(str(store.rejects_path(dataset))),
            "lines": result.lines,
            "seconds": round(result.seconds, 3),
            "rows_per_s": round(result.rows_per_second),
            "parquet_bytes": result.parquet_bytes,
            "path": MetadataValue.path(str(parquet)),
            "source_sha256": result.source_sha256,
            **_source(result.source_url, result.source_last_modified),
            "dagster/column_schema": column_schema(dataset),
        },
        data_version=DataVersion(result.source_sha256),
    )


def _table_bytes(warehouse: Warehouse, dataset: Dataset) -> int:
    """The bytes of ``imdb.<table>`` now, heap and indexes (0 when there is none)."""
    relation = f"{SCHEMA}.{dataset.table}"
    with warehouse.connect() as conn:
        return sum(disk.relation_sizes(conn, [relation]).get(relation, (0, 0)))


def _refuse_without_room(
    dataset: Dataset, layers: AbstractSet[AssetKey], store: DataStore, warehouse: Warehouse
) -> None:
    """Refuse the step before it starts when the disk cannot hold what it would write if the file changed, as large
    as the last refresh's: a new raw file, a new frame and a new table, each beside the one it replaces. The table
    counts only on the embedded server: another server's disk is not the data folder's; a bucket has no such limit."""
    if not store.local:
        return
    copy = download.LocalCopy.read(store.raw_path(dataset))
    frame = parse.ParseResult.read(store.parquet_path(dataset))
    need = {}
    if raw_key(dataset) in layers and copy is not None:
        need["raw file"] = copy.bytes
    if parsed_key(dataset) in layers and frame is not None:
        need["Parquet"] = frame.parquet_bytes
    if table_key(dataset) in layers and warehouse.embedded:
        need["table"] = _table_bytes(warehouse, dataset)
    disk.refuse_without_room(f"refreshing {dataset.file_name}", need, store.folder, store.disk_safety_factor)


def _load(
    context: AssetExecutionContext,
    dataset: Dataset,
    config: FileRefreshConfig,
    store: DataStore,
    warehouse: Warehouse,
) -> MaterializeResult:
    parquet = store.parquet_path(dataset)
    parsed = parse.ParseResult.read(parquet)
    if parsed is None:
        raise FileNotFoundError(f"{parquet} does not exist: materialize {parsed_key(dataset).to_user_string()}")
    url = warehouse.url()
    with warehouse.connect() as conn:
        current = load.current_load(conn, dataset)
    work: dict[str, Any]
    if current is not None and current.source_sha256 == parsed.source_sha256:
        context.log.info(f"{SCHEMA}.{dataset.table} is already built from this copy of {dataset.file_name}")
        reloaded, rows, work = False, current.rows, {}
    else:
        if warehouse.embedded:
            # Now that the frame's rows are known: the new table at the current one's bytes per row.
            table = disk.table_estimate(
                parsed.rows, current.rows if current else None, _table_bytes(warehouse, dataset), parsed.parquet_bytes
            )
            disk.refuse_without_room(
                f"loading {SCHEMA}.{dataset.table}", {"table": table}, store.folder, store.disk_safety_factor
            )
        result = load.load_table(
            dataset,
            parquet,
            url,
            source_sha256=parsed.source_sha256,
            source_last_modified=parsed.source_last_modified or None,
            allow_older_release=config.allow_older_release,
            log=context.log,
            connections=warehouse.load_connections,
            kept_dir=store.kept_dir,
            diff_max_share=warehouse.diff_max_share,
        )
        context.log.info(
            f"{SCHEMA}.{dataset.table}: {result.rows:,} rows ({result.method} load) in {result.seconds:.1f}s "
            f"({result.rows_per_second:,.0f} rows/s)"
        )
        reloaded, rows = True, result.rows
        work = {
            "load_method": result.method,
            **_changes(result, current),
            "seconds": round(result.seconds, 3),
            "rows_per_s": round(result.rows_per_second),
            "refreshed_views": MetadataValue.json(result.refreshed_views),
        }
    return MaterializeResult(
        asset_key=table_key(dataset),
        metadata={
            "dagster/row_count": rows,
            "reloaded": reloaded,
            **work,
            "rejects": parsed.rejects,
            "rejects_path": MetadataValue.path(str(store.rejects_path(dataset))),
            **metadata.relation_metadata(warehouse, f"{SCHEMA}.{dataset.table}"),
            **metadata.data_folder_metadata(store.root),
            "source_sha256": parsed.source_sha256,
            **_source(parsed.source_url, parsed.source_last_modified),
            "dagster/column_schema": column_schema(dataset),
        },
        data_version=DataVersion(parsed.source_sha256),
    )


def _changes(result: load.LoadResult, held: load.CurrentLoad | None) -> dict[str, Any]:
    """Rows inserted, changed and deleted by this release, where known: from the diff, or everything inserted by a
    first load; a whole load of a table whose previous frame was not kept has no such figures."""
    if result.diff is not None:
        inserted, changed, deleted = result.diff.inserted, result.diff.changed, result.diff.deleted
    elif held is None:
        inserted, changed, deleted = result.rows, 0, 0
    else:
        return {}
    return {"rows_inserted": inserted, "rows_changed": changed, "rows_deleted": deleted}


def _history(
    context: AssetExecutionContext, ratings: Dataset, warehouse: Warehouse, appended: bool
) -> MaterializeResult:
    """The history after this step's load of title.ratings (``appended``: it loaded a release, else the table and
    so the history were kept): its rows, and those valid from the release the table holds."""
    table = f"{SCHEMA}.{history.HISTORY_TABLE}"
    with warehouse.connect() as conn:
        held = load.current_load(conn, ratings)
        day = release.release_day(held.source_last_modified if held else None)
        total, this_release = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE valid_from = %s) FROM {table}", (day,)
        ).fetchone() or (0, 0)
    context.log.info(f"{table}: {this_release:,} rows from the release of {day}, {total:,} in all")
    return MaterializeResult(
        asset_key=HISTORY_KEY,
        metadata={
            "dagster/row_count": total,
            "reloaded": appended,
            "release_date": MetadataValue.text(day.isoformat()),
            "rows_of_this_release": this_release,
            **metadata.relation_metadata(warehouse, table),
        },
        data_version=DataVersion(held.source_sha256 if held else ""),
    )


def build_file_assets(dataset: Dataset) -> AssetsDefinition:
    """The file's three assets, materialized by one step in layer order (a subset when a run selects one)."""

    @multi_asset(
        name=f"refresh_{dataset.table}",
        specs=file_specs(dataset),
        can_subset=True,
        description=f"Download, parse and load {dataset.file_name}.",
    )
    def refresh_file(
        context: AssetExecutionContext,
        config: FileRefreshConfig,
        source: ImdbSource,
        store: DataStore,
        warehouse: Warehouse,
    ) -> Iterator[MaterializeResult]:
        selected = context.selected_asset_keys
        storage.check(store.root)
        _refuse_without_room(dataset, selected, store, warehouse)
        # An object store's error names the bucket and the key of what the layer writes or reads.
        if raw_key(dataset) in selected:
            with storage.naming(store.raw_path(dataset)):
                yield _download(context, dataset, config, source, store, warehouse)
        if parsed_key(dataset) in selected:
            with storage.naming(store.parquet_path(dataset)):
                yield _parse(context, dataset, store)
        reloaded = True
        if table_key(dataset) in selected:
            with storage.naming(store.parquet_path(dataset)):
                table = _load(context, dataset, config, store, warehouse)
            reloaded = bool(table.metadata and table.metadata["reloaded"])
            yield table
        if HISTORY_KEY in selected:
            yield _history(context, dataset, warehouse, appended=reloaded)

    return refresh_file


imdb_file_assets: list[AssetsDefinition] = [build_file_assets(dataset) for dataset in DATASETS]

defs = Definitions(assets=imdb_file_assets)
