//! Bounded reads from one OCI registry: manifests and blobs by reference, each capped in size and checked against its digest, with oci-client doing the token dance.

use std::time::Duration;

use crate::digest::Sha256;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};

use super::{CollectError, MAX_BLOB_BYTES, MAX_MANIFEST_BYTES, MAX_REDIRECTS, REQUEST_TIMEOUT};

/// The manifest media types a collector asks for.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct Access {
    /// Plain HTTP (loopback only; the caller checked).
    pub insecure: bool,
    /// Extra trusted CA certificates, PEM.
    pub ca_pem: Option<Vec<u8>>,
    /// The credentials.
    pub auth: RegistryAuth,
}

/// A connection to one repository of one registry.
pub struct Registry {
    http: reqwest::Client,
    host: String,
    base: String,
    repo: String,
    auth_header: Option<String>,
}

/// A fetched manifest: its bytes, the digest they hash to, and its declared media type.
pub struct Fetched {
    /// The body.
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of the body.
    pub digest: String,
}

/// `sha256:<hex>` of `bytes`, as descriptors and references spell a digest.
fn sha256(bytes: &[u8]) -> String {
    Sha256::of(bytes).to_string()
}

/// The HTTP client for our own bounded reads (redirects, timeouts, the `--ca-file`'s
/// CAs), and those CAs again for oci-client's token requests.
fn http_client(
    host: &str,
    access: &Access,
) -> Result<(reqwest::Client, Vec<oci_client::client::Certificate>), CollectError> {
    let client = |what| {
        let host = host.to_owned();
        move |source| CollectError::Client { host, what, source }
    };
    let mut certs = Vec::new();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .connect_timeout(Duration::from_secs(10))
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("promo-policy/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &access.ca_pem {
        let cas = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(client("cannot read the --ca-file"))?;
        if cas.is_empty() {
            return Err(CollectError::Registry {
                host: host.to_owned(),
                msg: "the --ca-file holds no certificate".into(),
            });
        }
        for ca in cas {
            builder = builder.tls_certs_merge([ca]);
        }
        certs.push(oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Pem,
            data: pem.clone(),
        });
    }
    let http = builder
        .build()
        .map_err(client("cannot build the HTTP client"))?;
    Ok((http, certs))
}

/// The `Authorization` header for our reads: the token oci-client obtained, else the
/// credentials given.
fn authorization(token: Option<String>, auth: &RegistryAuth) -> Option<String> {
    match (token, auth) {
        (Some(token), _) => Some(format!("Bearer {token}")),
        (None, RegistryAuth::Basic(user, pass)) => {
            use base64::Engine as _;
            let raw = format!("{user}:{pass}");
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            ))
        }
        (None, RegistryAuth::Bearer(token)) => Some(format!("Bearer {token}")),
        (None, RegistryAuth::Anonymous) => None,
    }
}

impl Registry {
    /// Connects to the registry of `reference`, authenticating for pulls.
    pub async fn connect(reference: &Reference, access: &Access) -> Result<Self, CollectError> {
        let host = reference.resolve_registry().to_string();
        let (http, certs) = http_client(&host, access)?;
        let oci_err = |what| {
            let host = host.clone();
            move |source| CollectError::Oci {
                host,
                what,
                source: Box::new(source),
            }
        };
        let protocol = if access.insecure {
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        };
        let oci = oci_client::Client::try_from(ClientConfig {
            protocol,
            extra_root_certificates: certs,
            read_timeout: Some(REQUEST_TIMEOUT),
            connect_timeout: Some(Duration::from_secs(10)),
            ..ClientConfig::default()
        })
        .map_err(oci_err("cannot build the OCI client"))?;
        // The token dance (anonymous, basic, or a bearer token for the Www-Authenticate
        // challenge) is oci-client's; the bounded reads below are ours.
        let token = oci
            .auth(reference, &access.auth, RegistryOperation::Pull)
            .await
            .map_err(oci_err("cannot authenticate"))?;
        let auth_header = authorization(token, &access.auth);
        let scheme = if access.insecure { "http" } else { "https" };
        let api_host = if host == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            host.clone()
        };
        Ok(Self {
            http,
            base: format!("{scheme}://{api_host}/v2/{}", reference.repository()),
            repo: reference.repository().to_string(),
            host,
            auth_header,
        })
    }

    /// The registry host, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository path, for messages.
    pub fn repository(&self) -> &str {
        &self.repo
    }

    fn err(&self, msg: String) -> CollectError {
        CollectError::Registry {
            host: self.host.clone(),
            msg,
        }
    }

    fn http_err(&self, what: String, source: reqwest::Error) -> CollectError {
        CollectError::Http {
            host: self.host.clone(),
            what,
            source,
        }
    }

    /// GETs `url`, reading at most `cap` bytes; `Ok(None)` on 404.
    async fn get_capped(
        &self,
        url: &str,
        accept: &str,
        cap: u64,
        what: &str,
    ) -> Result<Option<Vec<u8>>, CollectError> {
        let mut req = self.http.get(url).header("Accept", accept);
        if let Some(auth) = &self.auth_header {
            req = req.header("Authorization", auth);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|source| self.http_err(format!("cannot GET {what}"), source))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.err(format!("GET {what}: HTTP {status}")));
        }
        if let Some(len) = resp.content_length() {
            if len > cap {
                return Err(self.err(format!("{what} is {len} bytes; the limit is {cap}")));
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|source| self.http_err(format!("cannot read {what}"), source))?
        {
            if body.len() as u64 + chunk.len() as u64 > cap {
                return Err(self.err(format!("{what} is over the limit of {cap} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }

    /// The manifest at `reference` (a tag or a digest); `Ok(None)` when there is none.
    /// A digest reference is checked against the body.
    pub async fn manifest(&self, reference: &str) -> Result<Option<Fetched>, CollectError> {
        let sep = if reference.contains(':') { '@' } else { ':' };
        let what = format!("manifest {}{sep}{reference}", self.repo);
        let url = format!("{}/manifests/{reference}", self.base);
        let Some(bytes) = self
            .get_capped(&url, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, &what)
            .await?
        else {
            return Ok(None);
        };
        let digest = sha256(&bytes);
        if reference.contains(':') && reference != digest {
            return Err(self.err(format!(
                "{what}: the body hashes to {digest}, not the digest asked for"
            )));
        }
        Ok(Some(Fetched { bytes, digest }))
    }

    /// The OCI 1.1 referrers index of `digest`: `Ok(None)` when the registry has no
    /// referrers API (404), so the caller falls back to the tag schema.
    pub async fn referrers_api(&self, digest: &str) -> Result<Option<Vec<u8>>, CollectError> {
        let what = format!("referrers of {digest}");
        let url = format!("{}/referrers/{digest}", self.base);
        self.get_capped(
            &url,
            "application/vnd.oci.image.index.v1+json",
            MAX_MANIFEST_BYTES,
            &what,
        )
        .await
    }

    /// The blob `digest`, which the descriptor says is `size` bytes: refused when larger
    /// than the limit, of another size, or hashing to another digest.
    pub async fn blob(&self, digest: &str, size: u64) -> Result<Vec<u8>, CollectError> {
        let what = format!("blob {digest}");
        if size > MAX_BLOB_BYTES {
            return Err(self.err(format!(
                "{what}: its descriptor says {size} bytes; the limit is {MAX_BLOB_BYTES}"
            )));
        }
        if !digest.starts_with("sha256:") {
            return Err(self.err(format!("{what}: only sha256 digests are read")));
        }
        let url = format!("{}/blobs/{digest}", self.base);
        let bytes = self
            .get_capped(&url, "*/*", size, &what)
            .await?
            .ok_or_else(|| self.err(format!("{what}: not found")))?;
        let got = sha256(&bytes);
        if got != digest || bytes.len() as u64 != size {
            return Err(self.err(format!(
                "{what}: the registry sent {} bytes hashing to {got}, not what the descriptor says ({size} bytes, {digest})",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}
