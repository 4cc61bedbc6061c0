"""The report request form: the target (hidden), the format and the period covered."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, HiddenField, SelectField
from wtforms.validators import DataRequired, Optional

FORMAT_CHOICES = [("pdf", "PDF"), ("csv", "CSV"), ("oscal", "OSCAL assessment results (JSON)")]
SCOPE_CHOICES = [("framework", "Framework"), ("ai_system", "AI system")]


class ReportForm(FlaskForm):
    scope = SelectField("Scope", choices=SCOPE_CHOICES, validators=[DataRequired("Choose what the report covers.")])
    target = HiddenField(validators=[DataRequired("Choose the framework or AI system.")])
    format = SelectField("Format", choices=FORMAT_CHOICES, default="pdf",
                         validators=[DataRequired("Choose a format.")])
    # Optional here: the service gives the message beside the field (one rule, one wording).
    period_start = DateField("Period from", validators=[Optional()])
    period_end = DateField("Period to", validators=[Optional()])
