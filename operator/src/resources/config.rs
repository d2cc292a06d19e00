//! Operator-wide settings, read once at startup (never per reconcile).

/// Settings that are the same for every pair this operator manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorConfig {
    /// The operator's own image. Jobs copy the operator binary out of it with an init
    /// container, so Job entrypoints always match the controller's version. Set by the chart
    /// through `RECEIPTDB_OPERATOR_IMAGE`.
    pub operator_image: String,
    /// Where the binary lives inside the operator image.
    pub operator_binary: String,
    /// The one field manager every server-side apply uses, so the operator owns exactly the
    /// fields it sets and conflicts with other writers show up.
    pub field_manager: String,
    /// The namespace watched; `None` watches all namespaces.
    pub namespace: Option<String>,
}

/// Default field manager name.
pub const FIELD_MANAGER: &str = "receiptdb-operator";
/// Path of the binary in the operator image (see the Dockerfile).
pub const OPERATOR_BINARY: &str = "/usr/local/bin/receiptdb-operator";

impl OperatorConfig {
    /// A configuration with the given image and the defaults for everything else.
    pub fn new(operator_image: impl Into<String>) -> Self {
        Self {
            operator_image: operator_image.into(),
            operator_binary: OPERATOR_BINARY.to_string(),
            field_manager: FIELD_MANAGER.to_string(),
            namespace: None,
        }
    }

    /// The image to use when none is configured: this build's version, so a
    /// hand-started operator still creates runnable Jobs.
    pub fn default_image() -> String {
        format!(
            "ghcr.io/receiptdb/receiptdb-operator:{}",
            env!("CARGO_PKG_VERSION")
        )
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self::new(Self::default_image())
    }
}
