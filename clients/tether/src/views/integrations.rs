//! SIEM integrations (`tether integrations`).

use serde::Serialize;
use tether_proto::v1 as pb;

use crate::output::{Fields, Render, Table, rfc3339, time_cell};

#[derive(Debug, Serialize)]
pub struct IntegrationView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub format: String,
    pub tls: bool,
    pub created_at: Option<String>,
    pub created_by: String,
    pub delivered: i64,
    pub last_delivered_at: Option<String>,
    pub failures: i64,
    pub last_error: String,
    pub next_attempt_at: Option<String>,
}

impl From<pb::Integration> for IntegrationView {
    fn from(i: pb::Integration) -> Self {
        Self {
            id: i.id,
            name: i.name,
            kind: i.kind,
            target: i.target,
            format: i.format,
            tls: i.tls,
            created_at: rfc3339(i.created_at_ms),
            created_by: i.created_by,
            delivered: i.delivered,
            last_delivered_at: rfc3339(i.last_delivered_at_ms),
            failures: i.failures,
            last_error: i.last_error,
            next_attempt_at: rfc3339(i.next_attempt_ms),
        }
    }
}

impl Render for IntegrationView {
    fn to_text(&self) -> String {
        Fields::new()
            .add("id", &self.id)
            .add("name", &self.name)
            .add("kind", &self.kind)
            .add("target", &self.target)
            .add("format", &self.format)
            .add("tls", self.tls.to_string())
            .add("created", time_cell(&self.created_at))
            .add("delivered", self.delivered.to_string())
            .add("failures", self.failures.to_string())
            .add("last error", &self.last_error)
            .render()
    }
}

/// The answer to `add`: the record and, once, the webhook secret.
#[derive(Debug, Serialize)]
pub struct AddedIntegrationView {
    pub integration: IntegrationView,
    pub secret: String,
}

impl Render for AddedIntegrationView {
    fn to_text(&self) -> String {
        let mut text = self.integration.to_text();
        if !self.secret.is_empty() {
            text.push_str(&format!(
                "\nwebhook secret (HMAC-SHA256 key; shown only now, store it in the receiver):\n{}\n",
                self.secret
            ));
        }
        text
    }
}

#[derive(Debug, Serialize)]
pub struct IntegrationsView {
    pub integrations: Vec<IntegrationView>,
}

impl Render for IntegrationsView {
    fn to_text(&self) -> String {
        let mut table = Table::new(&[
            "ID",
            "NAME",
            "KIND",
            "TARGET",
            "FORMAT",
            "DELIVERED",
            "LAST DELIVERED",
            "FAILURES",
            "LAST ERROR",
        ]);
        for i in &self.integrations {
            table.row([
                i.id.clone(),
                i.name.clone(),
                i.kind.clone(),
                i.target.clone(),
                i.format.clone(),
                i.delivered.to_string(),
                time_cell(&i.last_delivered_at),
                i.failures.to_string(),
                i.last_error.clone(),
            ]);
        }
        table.render()
    }
}
