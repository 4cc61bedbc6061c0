from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length


class CreateUserForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Enter the person's name."), Length(max=255)])
    email = EmailField("E-mail", validators=[DataRequired("Enter an e-mail address."), Length(max=254)])
    role = SelectField("Role", validators=[DataRequired("Choose a role.")])
    password = PasswordField(
        "Initial password", validators=[DataRequired("Enter an initial password."), Length(max=256)],
        description="Give it to the person over a separate channel; they can change it after signing in.",
    )


class RoleForm(FlaskForm):
    role = SelectField("Role", validators=[DataRequired("Choose a role.")])
