from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length


class ControlForm(FlaskForm):
    """Inline edit of a control. The weight is a plain string here: governance.services.controls
    parses and bounds it, so the form and the CLI/import share one rule and one message."""

    title = StringField("Title", validators=[DataRequired("Enter a title."), Length(max=500)])
    text = TextAreaField("Text")
    assessable = BooleanField("Assessable", description="Counts towards the framework's score.")
    weight = StringField("Weight", validators=[DataRequired("Enter a weight, e.g. 1.")],
                         description="From 0 to 999.999; how much the control counts in its framework's score.")
