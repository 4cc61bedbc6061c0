"""Forms of the retention page: place a legal hold, release one, run retention now."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from governance.services.legal_holds import REASON_MAX

TARGET_CHOICES = [("framework", "Framework"), ("control", "Control"), ("evidence", "Evidence")]


class HoldForm(FlaskForm):
    target_type = SelectField("Hold", choices=TARGET_CHOICES, validators=[DataRequired("Choose what to hold.")])
    target = StringField(
        "Which one", validators=[DataRequired("Give its id (or a control's reference, a framework's title)."),
                                 Length(max=500)],
        description="Its id, a control's reference (e.g. GV-1.1) or a framework's title.")
    reason = TextAreaField("Reason", validators=[DataRequired("Give the reason (e.g. the matter or ticket it is for)."),
                                                 Length(max=REASON_MAX)])
    next = HiddenField()


class ReleaseForm(FlaskForm):
    release_reason = TextAreaField("Why release it", validators=[DataRequired("Say why the hold ends."),
                                                                 Length(max=REASON_MAX)])


class RunForm(FlaskForm):
    pass
