from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from governance.services import passwords


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired("Enter your e-mail address."), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password."),
                                                     Length(max=passwords.MAX_LENGTH)])
    next = HiddenField()


class MfaVerifyForm(FlaskForm):
    code = StringField(
        "Code", validators=[DataRequired("Enter the code from your authenticator app or a recovery code."),
                            Length(max=32)],
        description="The 6-digit code from your authenticator app, or one of your recovery codes.",
    )


class MfaEnrolForm(FlaskForm):
    code = StringField("Code from the app", validators=[DataRequired("Enter the 6-digit code your app shows."),
                                                        Length(max=16)])


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[
        DataRequired("Enter your current password."), Length(max=passwords.MAX_LENGTH)])
    new_password = PasswordField(
        "New password",
        validators=[DataRequired("Enter a new password."),
                    Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH,
                           message=f"Use {passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters.")],
        description=f"At least {passwords.MIN_LENGTH} characters; a long passphrase is best. "
                    "Common passwords are refused.",
    )
    confirm_password = PasswordField("Repeat the new password", validators=[
        DataRequired("Repeat the new password."), EqualTo("new_password", "The two new passwords differ.")])
