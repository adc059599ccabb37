# One image for every service of docker-compose.yml but postgres:
# the imdb_assets code server (runs execute here), the two webservers, the daemon and the API.
FROM python:3.11-slim

RUN pip install --no-cache-dir "uv==0.13.8"

# The virtualenv lives outside the app folder so that `COPY . .` can never clobber it
# with a host .venv, whatever the build context holds.
ENV UV_PROJECT_ENVIRONMENT=/opt/dagster/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/dagster/.venv/bin:${PATH}" \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    IMDB_DATA_DIR=/data

WORKDIR /opt/dagster/app

# Dependencies first (cached while only the project's own code changes), then the project. uv's cache is a cache
# mount: it speeds up the next build and stays out of the image (the venv holds copies, UV_LINK_MODE=copy).
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-install-project
# The instance config (storage in DATABASE_URL's server) and the workspace that points
# dagster-webserver and dagster-daemon at the code server.
RUN mkdir -p /opt/dagster/dagster_home /data
COPY dagster.yaml /opt/dagster/dagster_home/dagster.yaml
COPY docker/workspace.yaml /opt/dagster/dagster_home/workspace.yaml
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev
# Parse the dbt project now (dagster-dbt's preparation, and the record of what was parsed that the definitions
# check), so the services start from a ready manifest. It runs dbt, which it finds on PATH (the venv's, above).
RUN /opt/dagster/.venv/bin/imdb prepare

EXPOSE 3000 4000 8000
