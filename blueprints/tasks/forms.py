"""The task form (new task, edit task). Only lengths are checked here; every rule and message
(title required, an active assignee, a real date, a live control) is governance.services.tasks'."""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import Length

from governance.models.enums import Severity
from governance.services.tasks import TEXT_MAX, TITLE_MAX

PRIORITIES = [(s.value, s.value.capitalize())
              for s in (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)]


class TaskForm(FlaskForm):
    title = StringField("Title", validators=[Length(max=TITLE_MAX)])
    description = TextAreaField("Description", validators=[Length(max=TEXT_MAX)])
    priority = SelectField("Priority", validate_choice=False, default=Severity.MEDIUM.value, choices=PRIORITIES)
    # Choices (active users) come at request time; the service checks the value.
    assignee_id = SelectField("Assignee", validate_choice=False)
    due_date = StringField("Due date", render_kw={"type": "date"}, validators=[Length(max=10)],
                           description="Optional. After this day the task shows as overdue.")
