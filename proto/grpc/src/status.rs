//! The one mapping between Herald's error classes and gRPC status codes.

use crate::config::{ErrorCode, ErrorDetail};
use tonic::{Code, Status};

pub fn code_of(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::Aborted => Code::Aborted,
        ErrorCode::Internal | ErrorCode::Unspecified => Code::Internal,
    }
}

pub fn error_code_of(code: Code) -> ErrorCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => ErrorCode::InvalidArgument,
        Code::NotFound => ErrorCode::NotFound,
        Code::AlreadyExists => ErrorCode::AlreadyExists,
        Code::FailedPrecondition => ErrorCode::FailedPrecondition,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorCode::Unavailable,
        Code::PermissionDenied | Code::Unauthenticated => ErrorCode::PermissionDenied,
        Code::Aborted => ErrorCode::Aborted,
        _ => ErrorCode::Internal,
    }
}

impl ErrorDetail {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorDetail {
            code: code as i32,
            message: message.into(),
            field: String::new(),
        }
    }

    /// An INVALID_ARGUMENT naming the offending field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorDetail {
            code: ErrorCode::InvalidArgument as i32,
            message: message.into(),
            field: field.into(),
        }
    }

    /// A gRPC status; the message names the field when there is one.
    pub fn to_status(&self) -> Status {
        let msg = if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        };
        Status::new(code_of(self.code()), msg)
    }

    pub fn from_status(s: &Status) -> Self {
        ErrorDetail::new(error_code_of(s.code()), s.message())
    }
}

impl std::fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ErrorDetail {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for c in [
            ErrorCode::InvalidArgument,
            ErrorCode::NotFound,
            ErrorCode::AlreadyExists,
            ErrorCode::FailedPrecondition,
            ErrorCode::Unavailable,
            ErrorCode::PermissionDenied,
            ErrorCode::Aborted,
            ErrorCode::Internal,
        ] {
            assert_eq!(error_code_of(code_of(c)), c);
        }
    }

    #[test]
    fn field_in_message() {
        let s = ErrorDetail::invalid("name", "not a DNS name").to_status();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "name: not a DNS name");
    }
}
