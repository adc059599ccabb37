"""A REST API over the platform's tables and marts: FastAPI, psycopg's async pool, API keys with roles."""
