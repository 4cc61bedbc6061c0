from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import Length

from governance.services.evidence_review import COMMENT_MAX


class ReviewForm(FlaskForm):
    """Approve or reject one revision. The decision comes from the button pressed (name="decision",
    value approve|reject); governance.services.evidence_review checks it and that a rejection says why."""

    decision = StringField("Decision")
    comment = TextAreaField("Comment", validators=[Length(max=COMMENT_MAX)],
                            description="Required to reject: say what is wrong so the uploader can fix it.")


def review_form(number: int, **kwargs: object) -> ReviewForm:
    """The review form of revision `number`: plain field names, but ids unique on a page that shows
    several revisions in review."""
    form = ReviewForm(**kwargs)
    for field in (form.decision, form.comment):
        field.id = f"{field.name}-r{number}"
        field.label.field_id = field.id
    return form
