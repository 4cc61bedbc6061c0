"""Embedded PostgreSQL and S3 server for development (placeholder, being written)."""

import config


def resolve(settings: config.Settings) -> config.Settings:
    raise config.ConfigError("embedded services not available yet: set DATABASE_URL and S3_ENDPOINT")
