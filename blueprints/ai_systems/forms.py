"""Forms of the inventory pages: an AI system, a model, a dataset. Only lengths are checked here;
every rule and message (a name is required and unique, a live owner, a real date, a known stage or
role) is governance.services.ai_systems', raised as AIInventoryError beside its field."""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import Length

from governance.models.enums import AIActRole, AIAutonomy, AILifecycleStage, AIModelApproval, AIRiskClass

NAME_MAX = 255
SHORT_MAX = 255
TEXT_MAX = 10_000
LIST_MAX = 5_000
CERTIFICATE_MAX = 500
DATABASE_ID_MAX = 128
URL_MAX = 2048
VERSION_MAX = 128

STAGE_LABELS = {
    AILifecycleStage.IDEA: "Idea",
    AILifecycleStage.DEVELOPMENT: "Development",
    AILifecycleStage.VALIDATION: "Validation",
    AILifecycleStage.PRODUCTION: "Production",
    AILifecycleStage.RETIRED: "Retired",
}
ROLE_LABELS = {
    AIActRole.PROVIDER: "Provider",
    AIActRole.DEPLOYER: "Deployer",
    AIActRole.IMPORTER: "Importer",
    AIActRole.DISTRIBUTOR: "Distributor",
}
AUTONOMY_LABELS = {
    AIAutonomy.ASSISTIVE: "Assistive: a person decides, the system suggests",
    AIAutonomy.HUMAN_IN_THE_LOOP: "Human in the loop: a person approves each decision",
    AIAutonomy.HUMAN_ON_THE_LOOP: "Human on the loop: a person monitors and can step in",
    AIAutonomy.AUTONOMOUS: "Autonomous: no person takes part in single decisions",
}
RISK_LABELS = {
    AIRiskClass.PROHIBITED: "Prohibited",
    AIRiskClass.HIGH: "High risk",
    AIRiskClass.LIMITED: "Limited risk",
    AIRiskClass.MINIMAL: "Minimal risk",
}
APPROVAL_LABELS = {
    AIModelApproval.PENDING: "Pending",
    AIModelApproval.APPROVED: "Approved",
    AIModelApproval.RESTRICTED: "Restricted",
    AIModelApproval.BLOCKED: "Blocked",
}

LIST_HINT = "Separate them with commas or put one per line."


def _choices(labels: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(key.value, label) for key, label in labels.items()]


class SystemForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=NAME_MAX)])
    purpose = TextAreaField("Purpose", validators=[Length(max=TEXT_MAX)],
                            description="What the system does and why the organisation uses it.")
    intended_use = TextAreaField("Intended use", validators=[Length(max=TEXT_MAX)],
                                 description="Who uses it, for which decisions, in which setting.")
    # Choices (active users) come at request time; the service checks the value.
    owner_id = SelectField("Owner", validate_choice=False, description="Who answers for the system.")
    business_unit = StringField("Business unit", validators=[Length(max=SHORT_MAX)])
    lifecycle_stage = SelectField("Lifecycle stage", validate_choice=False, choices=_choices(STAGE_LABELS),
                                  default=AILifecycleStage.IDEA.value)
    eu_role = SelectField("Role under the EU AI Act", validate_choice=False, choices=_choices(ROLE_LABELS),
                          default=AIActRole.DEPLOYER.value,
                          description="Provider: you develop it or have it developed and put it on the market "
                                      "under your name. Deployer: you use it under your authority.")
    autonomy_level = SelectField("Autonomy level", validate_choice=False, choices=_choices(AUTONOMY_LABELS),
                                 default=AIAutonomy.ASSISTIVE.value)
    human_oversight = TextAreaField("Human-oversight measure", validators=[Length(max=TEXT_MAX)],
                                    description="How people oversee the system and can stop or override it.")
    oversight_owner_id = SelectField("Oversight owner", validate_choice=False,
                                     description="The person responsible for human oversight.")
    data_categories = TextAreaField("Data categories", validators=[Length(max=LIST_MAX)],
                                    description=f"The kinds of data the system processes. {LIST_HINT}")
    deployment_regions = TextAreaField("Deployment regions", validators=[Length(max=LIST_MAX)],
                                       description=f"Where it is used, e.g. member states. {LIST_HINT}")
    next_review_date = StringField("Next review date", render_kw={"type": "date"}, validators=[Length(max=10)])
    provider_name = StringField("Provider name and contact", validators=[Length(max=SHORT_MAX)],
                                description="For the EU database registration (Annex VIII).")
    operating_logic = TextAreaField("Data used and operating logic", validators=[Length(max=TEXT_MAX)],
                                    description="A short description of the data the system uses and how it works.")
    conformity_certificate = StringField("Conformity certificate", validators=[Length(max=CERTIFICATE_MAX)],
                                         description="Type, number and expiry of the notified body's certificate, "
                                                     "when there is one.")
    eu_database_id = StringField("EU database registration number", validators=[Length(max=DATABASE_ID_MAX)])
    instructions_url = StringField("Instructions for use (URL)", validators=[Length(max=URL_MAX)],
                                   render_kw={"type": "url"})


class ModelForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=NAME_MAX)])
    version = StringField("Version", validators=[Length(max=VERSION_MAX)])
    provider = StringField("Provider", validators=[Length(max=SHORT_MAX)])
    license = StringField("Licence", validators=[Length(max=SHORT_MAX)])
    approval_status = SelectField("Approval status", validate_choice=False, choices=_choices(APPROVAL_LABELS),
                                  default=AIModelApproval.PENDING.value,
                                  description="Whether the organisation allows systems to use this model.")
    notes = TextAreaField("Notes", validators=[Length(max=TEXT_MAX)])


class DatasetForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=NAME_MAX)])
    source = TextAreaField("Source", validators=[Length(max=TEXT_MAX)],
                           description="Where the data comes from.")
    personal_data = SelectField("Contains personal data", validate_choice=False,
                                choices=[("no", "No"), ("yes", "Yes")], default="no")
    license = StringField("Licence", validators=[Length(max=SHORT_MAX)])
    description = TextAreaField("Description", validators=[Length(max=TEXT_MAX)])
