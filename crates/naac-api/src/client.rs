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

/// A data token's holder proving itself: its key and what signs with it.
pub type Holder<'a> = (&'a naac_token::Key, &'a dyn Fn(&[u8]) -> Vec<u8>);

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
        (idempotency_key, pool_token): (Option<&str>, Option<&str>),
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
        if let Some(t) = pool_token {
            req = req.header("Naac-Pool-Token", t);
        }
        self.answer(req).await
    }

    /// Every job on the node, newest first (every page).
    pub async fn jobs(&self) -> Result<Vec<JobView>, ClientError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut req = self
                .http
                .get(self.url("/v1/jobs"))
                .query(&[("limit", "1000")])
                .bearer_auth(&self.token);
            if let Some(c) = &cursor {
                req = req.query(&[("cursor", c)]);
            }
            let page: crate::JobPage = self.answer(req).await?;
            all.extend(page.jobs);
            match page.next {
                Some(n) => cursor = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// A `GET` whose answer is read as it arrives: the response once its status is a
    /// success, else the problem it carries.
    async fn stream(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                addr: self.addr.clone(),
                why: e.to_string(),
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        Err(problem_of(status, &resp.bytes().await.unwrap_or_default()))
    }

    /// Follows job `id`'s event stream (`GET /v1/jobs/{id}/events`), calling `f` with the
    /// job as each event shows it, until the stream ends (after the job does) or `f`
    /// returns `false`.
    pub async fn follow(
        &self,
        id: &str,
        mut f: impl FnMut(JobView) -> bool,
    ) -> Result<(), ClientError> {
        let mut resp = self.stream(&format!("/v1/jobs/{id}/events")).await?;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ClientError::Garbled(format!("the event stream broke off: {e}")))?
        {
            buf.extend_from_slice(&chunk);
            // Events end with a blank line; a keep-alive is a comment line.
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buf.drain(..end + 2).collect();
                for line in String::from_utf8_lossy(&event).lines() {
                    if let Some(data) = line.strip_prefix("data:")
                        && let Ok(view) = serde_json::from_str::<JobView>(data.trim())
                        && !f(view)
                    {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Downloads job `id`'s results (`GET /v1/jobs/{id}/archive`) and unpacks them into
    /// `dir`; nothing in the archive lands outside it.
    pub async fn archive(&self, id: &str, dir: &std::path::Path) -> Result<(), ClientError> {
        let resp = self.stream(&format!("/v1/jobs/{id}/archive")).await?;
        let io = |what: &str, e: std::io::Error| ClientError::Garbled(format!("{what}: {e}"));
        std::fs::create_dir_all(dir).map_err(|e| io(&format!("create {}", dir.display()), e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".naac-archive-")
            .tempfile_in(dir)
            .map_err(|e| io("create a temporary file", e))?;
        let mut resp = resp;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ClientError::Garbled(format!("the archive broke off: {e}")))?
        {
            std::io::Write::write_all(tmp.as_file_mut(), &chunk)
                .map_err(|e| io("write the archive", e))?;
        }
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let f = tmp.reopen()?;
            tar::Archive::new(f).unpack(&dir)
        })
        .await
        .map_err(|e| ClientError::Garbled(e.to_string()))?
        .map_err(|e| io("unpack the archive", e))?;
        Ok(())
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

    /// File `path` of stored data `id` (64 hex) through its owner's node, with this
    /// client's token as the data token; `holder` proves the token's holder (its key and a
    /// signer, see [`crate::data`]).
    pub async fn read_data(
        &self,
        id: &str,
        path: &str,
        holder: Option<Holder<'_>>,
    ) -> Result<Vec<u8>, ClientError> {
        let at = format!("/v1/store/{id}/{path}");
        let mut req = self.http.get(self.url(&at)).bearer_auth(&self.token);
        if let Some((key, sign)) = holder {
            let h = crate::data::holder_header(key, "GET", &at, b"", sign);
            req = req.header(crate::data::HOLDER_HEADER, h);
        }
        self.bytes(req).await
    }

    /// Stores `bytes` as file `path` in the name of the node's user (see
    /// [`Client::read_data`]); answers `{"id", "path", "bytes", "private"}`.
    pub async fn write_data(
        &self,
        path: &str,
        bytes: Vec<u8>,
        holder: Option<Holder<'_>>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut req = self
            .http
            .put(self.url("/v1/store"))
            .query(&[("path", path)])
            .bearer_auth(&self.token);
        if let Some((key, sign)) = holder {
            let signed = format!("/v1/store?path={path}");
            let h = crate::data::holder_header(key, "PUT", &signed, &bytes, sign);
            req = req.header(crate::data::HOLDER_HEADER, h);
        }
        self.answer(req.body(bytes)).await
    }

    pub async fn node(&self) -> Result<serde_json::Value, ClientError> {
        let req = self.http.get(self.url("/v1/node")).bearer_auth(&self.token);
        self.answer(req).await
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let bytes = self.bytes(req).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Garbled(e.to_string()))
    }

    /// The body of a successful answer; a problem otherwise.
    async fn bytes(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ClientError> {
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
            return Ok(bytes.to_vec());
        }
        Err(problem_of(status, &bytes))
    }
}

fn problem_of(status: reqwest::StatusCode, bytes: &[u8]) -> ClientError {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    ClientError::Problem(Problem {
        status: status.as_u16(),
        title: text("title"),
        detail: if v["detail"].is_string() {
            text("detail")
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        },
        retry_after: None,
        field: v["field"].as_str().map(str::to_owned),
    })
}
