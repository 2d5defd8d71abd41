//! `ApiError`: every failure the REST API answers, rendered as ACI's `CloudError`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_proto::arm::{CloudError, ErrorBody};

use crate::store::StoreError;

/// An error answered to a REST client: status, ACI error code, message and the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub target: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            target: None,
        }
    }

    /// 400 naming the field at fault.
    pub fn bad_request(
        code: &'static str,
        target: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
            target: Some(target.into()),
        }
    }

    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// ARM's answer for a resource that does not exist — or that the caller may not see.
    pub fn group_not_found(resource_group: &str, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.ContainerInstance/containerGroups/{name}' under resource group \
                 '{resource_group}' was not found."
            ),
        )
    }

    pub fn subscription_not_found(subscription: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{subscription}' could not be found."),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "The server encountered an internal error. Please retry the request.",
        )
    }

    pub fn body(&self) -> CloudError {
        CloudError {
            error: ErrorBody {
                code: self.code.to_owned(),
                message: self.message.clone(),
                target: self.target.clone(),
                details: Vec::new(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", what.to_string())
            }
            // A guarded write that kept losing to concurrent writers: ARM's answer to a
            // concurrent change, so the client retries (never a 500).
            StoreError::Contended => ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                "The resource is being changed by other requests at the same time; retry.",
            ),
            StoreError::ResourceGroupLimit => ApiError::new(
                StatusCode::CONFLICT,
                "ResourceGroupQuotaExceeded",
                format!(
                    "The subscription has {} resource groups, the most it may have; delete one first.",
                    crate::store::RESOURCE_GROUPS_PER_SUBSCRIPTION
                ),
            ),
            other => {
                // Internals never leak to the client; the log keeps the cause.
                tracing::error!(error = %other, "store error");
                ApiError::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_that_lost_every_retry_is_a_conflict_to_retry_not_a_500() {
        let err = ApiError::from(StoreError::Contended);
        assert_eq!(err.status, StatusCode::CONFLICT);
        assert_eq!(err.body().error.code, "Conflict");
    }
}
