"""Forms of the backups page: the two buttons carry nothing but their CSRF token."""

from flask_wtf import FlaskForm


class RunBackupForm(FlaskForm):
    """"Back up now": a full backup, queued for a worker."""


class RunDrillForm(FlaskForm):
    """"Run restore drill now": a drill of the newest restorable backup, queued for a worker."""
