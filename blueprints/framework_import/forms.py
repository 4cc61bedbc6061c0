from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import SelectChoice, SelectField, StringField
from wtforms.validators import Length, Optional


class ImportForm(FlaskForm):
    file = FileField(
        "Framework file", validators=[FileRequired("Choose a file to import.")],
        description="Our format (JSON or YAML) or an OSCAL catalog (JSON), at most 20 MB.",
    )
    format = SelectField(
        "Format", choices=[SelectChoice("auto", "Detect"), SelectChoice("ours", "Our format (JSON / YAML)"),
                           SelectChoice("oscal", "OSCAL catalog")],
        default="auto",
    )
    title = StringField("Title", validators=[Optional(), Length(max=255)],
                        description="Leave empty to use the file's title.")
    version = StringField("Version", validators=[Optional(), Length(max=64)],
                          description="Leave empty to use the file's version; a new version is a new framework.")
