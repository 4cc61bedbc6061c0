"""Forms of the erasure pages (Flask-WTF: CSRF on every POST)."""

from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from governance.services.erasure import COMMENT_MAX, REASON_MAX


class RequestForm(FlaskForm):
    email = StringField("The person's e-mail address", validators=[
        DataRequired("Enter the e-mail address of the person to erase."), Length(max=320)])
    reason = TextAreaField("Reason", validators=[
        DataRequired("Say why (e.g. the person's request and its date)."), Length(max=REASON_MAX)],
        description="Kept with the request; sealed in the audit log under the person's key.")


class DecisionForm(FlaskForm):
    comment = TextAreaField("Comment (needed to reject)", validators=[Optional(), Length(max=COMMENT_MAX)])


class ExecuteForm(FlaskForm):
    """Only the CSRF token: executing needs no input, but is a POST like every change."""
