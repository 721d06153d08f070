//! Values parsed once at the edge: once a handler holds an `Email` or a `Password`, it is a valid one.

use std::fmt;

use platform::FieldError;
use platform::problem::collect;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const EMAIL_MAX: usize = 254;
const EMAIL_LOCAL_MAX: usize = 64;
const PASSWORD_MIN: usize = 10;
const PASSWORD_MAX: usize = 256;
const FULL_NAME_MAX: usize = 200;

/// An email address, normalised (trimmed, lowercased) so equality is case-insensitive everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim().to_lowercase();
        let invalid = |message: &str| FieldError::new("email", "INVALID_FORMAT", message);
        if email.is_empty() {
            return Err(FieldError::new("email", "REQUIRED", "must not be empty"));
        }
        if email.chars().count() > EMAIL_MAX {
            return Err(FieldError::new(
                "email",
                "TOO_LONG",
                "must be at most 254 characters",
            ));
        }
        // Deliberately simple: one `@`, a plausible local part and a dotted domain. Deliverability is
        // the job of a confirmation mail, not of a parser.
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid("must be an email address"));
        };
        let well_formed = !local.is_empty()
            && local.len() <= EMAIL_LOCAL_MAX
            && !domain.contains('@')
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if well_formed {
            Ok(Self(email))
        } else {
            Err(invalid("must be an email address"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the strength rules. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Checks the strength rules; `email` is the account's, which the password must not equal.
    pub fn parse(raw: &str, email: Option<&str>) -> Result<Self, FieldError> {
        let weak = |message: &str| FieldError::new("password", "WEAK_PASSWORD", message);
        let length = raw.chars().count();
        if length > PASSWORD_MAX {
            return Err(FieldError::new(
                "password",
                "TOO_LONG",
                "must be at most 256 characters",
            ));
        }
        if length < PASSWORD_MIN {
            return Err(weak("must be at least 10 characters"));
        }
        if !raw.chars().any(char::is_alphabetic) || !raw.chars().any(|c| c.is_ascii_digit()) {
            return Err(weak("must contain at least one letter and one digit"));
        }
        if email.is_some_and(|email| raw.trim().eq_ignore_ascii_case(email.trim())) {
            return Err(weak("must not be the email address"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(********)")
    }
}

/// A display name: trimmed, 1-200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(FieldError::new(
                "full_name",
                "REQUIRED",
                "must not be blank",
            ));
        }
        if name.chars().count() > FULL_NAME_MAX {
            return Err(FieldError::new(
                "full_name",
                "TOO_LONG",
                "must be at most 200 characters",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(FieldError::new(
                "full_name",
                "INVALID_FORMAT",
                "must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164 form: `+` and 7-15 digits. Spaces and dashes are accepted and dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let digits = compact.strip_prefix('+').unwrap_or_default();
        let valid = compact.starts_with('+')
            && (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit());
        if valid {
            Ok(Self(compact))
        } else {
            Err(FieldError::new(
                "phone",
                "INVALID_FORMAT",
                "must be an international number: + and 7 to 15 digits",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether an account may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Inactive,
}

impl UserStatus {
    pub const ALL: [UserStatus; 2] = [UserStatus::Active, UserStatus::Inactive];

    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Inactive => "inactive",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// The validated fields of a new account (sign-up, or created by an admin).
#[derive(Debug)]
pub struct NewAccount {
    pub email: Email,
    pub password: Password,
    pub full_name: FullName,
    pub phone: Option<Phone>,
}

impl NewAccount {
    /// Parses every field, reporting every invalid one at once.
    pub fn parse(
        email: &str,
        password: &str,
        full_name: &str,
        phone: Option<&str>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let email = collect(Email::parse(email), &mut errors);
        let password = collect(
            Password::parse(password, email.as_ref().map(Email::as_str)),
            &mut errors,
        );
        let full_name = collect(FullName::parse(full_name), &mut errors);
        let phone = phone.map(|raw| collect(Phone::parse(raw), &mut errors));
        match (email, password, full_name, phone) {
            (Some(email), Some(password), Some(full_name), phone) if errors.is_empty() => {
                Ok(Self {
                    email,
                    password,
                    full_name,
                    phone: phone.flatten(),
                })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").map(|e| e.0);
        assert_eq!(email.ok().as_deref(), Some("ada.lovelace@example.com"));
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for raw in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@example..com",
            "ada@-example.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn weak_passwords_are_named_weak() {
        for raw in ["short1", "onlyletters", "1234567890", "ada@example.com1"] {
            let email = Some("ada@example.com1");
            let error = Password::parse(raw, email).err();
            assert_eq!(
                error.map(|e| (e.field, e.code)),
                Some(("password".into(), "WEAK_PASSWORD".into())),
                "{raw:?}"
            );
        }
        assert!(Password::parse("correct horse 42", Some("ada@example.com")).is_ok());
        assert!(Password::parse(&"a1".repeat(200), None).is_err());
    }

    #[test]
    fn passwords_never_print() {
        let password = Password::parse("correct horse 42", None).ok();
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn phones_follow_e164() {
        assert_eq!(
            Phone::parse("+44 20-7946 0958")
                .ok()
                .map(|p| p.0)
                .as_deref(),
            Some("+442079460958")
        );
        for raw in [
            "0201234567",
            "+12345",
            "+1234567890123456",
            "+44 abc 1234567",
        ] {
            assert!(Phone::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn full_names_must_not_be_blank_or_too_long() {
        assert!(FullName::parse("   ").is_err());
        assert!(FullName::parse(&"x".repeat(201)).is_err());
        assert_eq!(
            FullName::parse(" Ada ").ok().map(|n| n.0).as_deref(),
            Some("Ada")
        );
    }
}
