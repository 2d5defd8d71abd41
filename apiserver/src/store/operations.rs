//! Asynchronous operations: what ARM's `Azure-AsyncOperation` URLs report.

use super::Result;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Create,
    Update,
    Start,
    Restart,
    DeleteResourceGroup,
}

impl OperationKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Create => "create",
            OperationKind::Update => "update",
            OperationKind::Start => "start",
            OperationKind::Restart => "restart",
            OperationKind::DeleteResourceGroup => "deleteResourceGroup",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            OperationKind::Create,
            OperationKind::Update,
            OperationKind::Start,
            OperationKind::Restart,
            OperationKind::DeleteResourceGroup,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Where an operation is; rendered as ARM's operation status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationStatus {
    Pending,
    Succeeded,
    Failed,
    Canceled,
}

impl OperationStatus {
    /// ARM's canonical string (also as stored).
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Pending => "Pending",
            OperationStatus::Succeeded => "Succeeded",
            OperationStatus::Failed => "Failed",
            OperationStatus::Canceled => "Canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            OperationStatus::Pending,
            OperationStatus::Succeeded,
            OperationStatus::Failed,
            OperationStatus::Canceled,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    pub fn is_done(self) -> bool {
        self != OperationStatus::Pending
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRecord {
    pub id: String,
    pub subscription: String,
    pub group_id: String,
    pub resource_id: String,
    pub kind: OperationKind,
    pub generation: i64,
    pub status: OperationStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
}

/// Operations. Group changes insert theirs in their own transaction; node reports finish them.
#[async_trait::async_trait]
pub trait OperationStore: Send + Sync {
    async fn insert_operation(&self, operation: &OperationRecord) -> Result<()>;
    async fn operation(&self, id: &str) -> Result<Option<OperationRecord>>;
}
