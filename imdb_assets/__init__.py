"""IMDb datasets as Dagster assets."""
