//! The CLI's side of the API: submit, list, show and cancel jobs on a node.

use crate::{JobView, Problem};
use reqwest::multipart::{Form, Part};

/// Why a call did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the address (no node running there).
    #[error(
        "no node answers at {addr}: {why}\nhint: start one with `naac node` (its API listens on {addr} unless --api says otherwise)"
    )]
    Unreachable { addr: String, why: String },
    /// The node answered with a problem.
    #[error("{}", .0.detail)]
    Problem(Problem),
    #[error("the node's answer could not be read: {0}")]
    Garbled(String),
}

/// A node's API at `addr` (`host:port`), called with `token`.
pub struct Client {
    addr: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(addr: &str, token: &str) -> Self {
        Self {
            addr: addr.to_string(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Submits the job file `job` with the files it names (paths relative to it).
    pub async fn submit(
        &self,
        job: Vec<u8>,
        files: Vec<(String, Vec<u8>)>,
        idempotency_key: Option<&str>,
    ) -> Result<JobView, ClientError> {
        let mut form = Form::new().part("job", Part::bytes(job).file_name("job.toml"));
        for (name, bytes) in files {
            form = form.part(name.clone(), Part::bytes(bytes).file_name(name));
        }
        let mut req = self
            .http
            .post(self.url("/v1/jobs"))
            .bearer_auth(&self.token)
            .multipart(form);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        self.answer(req).await
    }

    pub async fn jobs(&self) -> Result<Vec<JobView>, ClientError> {
        let req = self.http.get(self.url("/v1/jobs")).bearer_auth(&self.token);
        self.answer(req).await
    }

    pub async fn job(&self, id: &str) -> Result<JobView, ClientError> {
        let req = self
            .http
            .get(self.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(&self.token);
        self.answer(req).await
    }

    pub async fn cancel(&self, id: &str) -> Result<JobView, ClientError> {
        let req = self
            .http
            .delete(self.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(&self.token);
        self.answer(req).await
    }

    pub async fn node(&self) -> Result<serde_json::Value, ClientError> {
        let req = self.http.get(self.url("/v1/node")).bearer_auth(&self.token);
        self.answer(req).await
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            addr: self.addr.clone(),
            why: e.to_string(),
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Garbled(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Garbled(e.to_string()));
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Err(ClientError::Problem(Problem {
            status: status.as_u16(),
            title: text("title"),
            detail: if v["detail"].is_string() {
                text("detail")
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            },
            retry_after: None,
        }))
    }
}
