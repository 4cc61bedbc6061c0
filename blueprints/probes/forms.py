"""Forms of the probe and check pages. Only the fixed fields are WTForms fields (and CSRF); a kind's
configuration and check parameters are the kind's own fields (governance.probes), read from the
posted form by name (config-<name>, param-<name>) and validated by the kind in
governance.services.probes, which also owns every other rule and message."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import Length

from governance.models.enums import Severity
from governance.services.probes import COMMENT_MAX, DESCRIPTION_MAX, NAME_MAX, SCHEDULE_MAX

CRON_HELP = ("Cron, five fields in UTC: minute hour day-of-month month weekday, e.g. “0 6 * * *” every day at "
             "06:00, “*/15 * * * *” every 15 minutes. Leave empty to run only on demand.")


class ProbeForm(FlaskForm):
    # Choices come from the registry and the users table at request time; the service checks the
    # values (an unknown kind or owner is an error beside the field, not a generic "not a valid choice").
    kind = SelectField("Kind", validate_choice=False,
                       description="Changing the kind shows its configuration fields.")
    name = StringField("Name", validators=[Length(max=NAME_MAX)])
    description = TextAreaField("Description", validators=[Length(max=DESCRIPTION_MAX)])
    schedule = StringField("Schedule", validators=[Length(max=SCHEDULE_MAX)], description=CRON_HELP)
    owner_id = SelectField("Owner", validate_choice=False, description="Told when the probe fails.")
    enabled = BooleanField("Enabled", default=True,
                           description="A disabled probe neither runs on schedule nor on demand.")


class CheckForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=NAME_MAX)])
    description = TextAreaField("Description", validators=[Length(max=DESCRIPTION_MAX)])
    severity = SelectField("Severity", validate_choice=False, default=Severity.MEDIUM.value,
                           choices=[(s.value, s.value.capitalize()) for s in Severity])


class AttestForm(FlaskForm):
    outcome = SelectField("Outcome", validate_choice=False, choices=[
        ("compliant", "Compliant"), ("partial", "Partially compliant"), ("non_compliant", "Not compliant")])
    comment = TextAreaField("Comment", validators=[Length(max=COMMENT_MAX)],
                            description="Required: what you checked and what you found.")
