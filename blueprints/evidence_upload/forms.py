"""The upload forms render the fields and carry errors beside them; they never read the request
(the body is streamed by the view), so they are always built with explicit formdata."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, DateField, SelectField, StringField, TextAreaField

from governance.models.enums import EvidenceCategory
from governance.services.evidence import DESCRIPTION_MAX, NAME_MAX

CATEGORY_LABELS = {
    EvidenceCategory.GENERAL: "Document or record",
    EvidenceCategory.MODEL_CARD: "Model card",
    EvidenceCategory.EVALUATION_REPORT: "Evaluation report",
    EvidenceCategory.DATA_SHEET: "Data sheet",
}

REVIEW_HINT = "Unticked, the upload is kept as a draft until you send it for review."


class RevisionForm(FlaskForm):
    # Fields render in this order; the file comes last, so the fields arrive before it in the body.
    send_for_review = BooleanField("Send for review now", default=True, description=REVIEW_HINT)
    file = FileField("File")


class EvidenceForm(RevisionForm):
    name = StringField("Name", render_kw={"maxlength": NAME_MAX, "autocomplete": "off"})
    description = TextAreaField("Description", render_kw={"maxlength": DESCRIPTION_MAX, "rows": 4},
                                description="What this evidence shows, and how it was produced.")
    category = SelectField("Kind", choices=[(c.value, label) for c, label in CATEGORY_LABELS.items()],
                           default=EvidenceCategory.GENERAL.value,
                           description="Model cards, evaluation reports and data sheets are what the AI system "
                                       "checks look for.")
    period_start = DateField("Observation period from",
                             description="The period the evidence covers (not the upload date).")
    period_end = DateField("Observation period to")
    expires_on = DateField("Expires on", description="After this day the evidence counts as expired.")
