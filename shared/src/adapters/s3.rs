//! The ingest bucket on S3 (`INGEST_BUCKET`): the ingest function reads a
//! notified object version as a stream (gunzipped when `.jsonl.gz`) and
//! writes its report; the catalogue function stores a `POST /jobs` body.

use async_compression::tokio::bufread::GzipDecoder;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use tokio::io::BufReader;

use crate::error::{Error, Result};
use crate::ports::{ObjectReader, ObjectStore};

const COMPONENT: &str = "s3";
/// An unversioned bucket's version id, as S3 names it.
pub const NULL_VERSION: &str = "null";

pub struct S3Objects {
    client: Client,
    bucket: String,
}

impl S3Objects {
    pub fn new(client: Client, bucket: impl Into<String>) -> S3Objects {
        S3Objects {
            client,
            bucket: bucket.into(),
        }
    }

    /// The client for `aws`; path-style addressing when an endpoint is set
    /// (the local moto server has no per-bucket host names).
    pub fn for_config(aws: &aws_types::SdkConfig, bucket: impl Into<String>) -> S3Objects {
        let config = aws_sdk_s3::config::Builder::from(aws)
            .force_path_style(aws.endpoint_url().is_some())
            .build();
        S3Objects::new(Client::from_conf(config), bucket)
    }
}

fn unavailable(err: impl std::error::Error) -> Error {
    Error::unavailable(COMPONENT, DisplayErrorContext(err))
}

impl ObjectStore for S3Objects {
    async fn current_version(&self, key: &str) -> Result<Option<String>> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match head {
            Ok(out) => Ok(Some(
                out.version_id.unwrap_or_else(|| NULL_VERSION.to_owned()),
            )),
            Err(err) => match err.into_service_error() {
                HeadObjectError::NotFound(_) => Ok(None),
                other => Err(unavailable(other)),
            },
        }
    }

    async fn open(&self, key: &str, version: &str, gzip: bool) -> Result<ObjectReader> {
        let mut get = self.client.get_object().bucket(&self.bucket).key(key);
        if version != NULL_VERSION {
            get = get.version_id(version);
        }
        let out = get.send().await.map_err(unavailable)?;
        let body = BufReader::new(out.body.into_async_read());
        Ok(if gzip {
            let mut decoder = GzipDecoder::new(body);
            // Concatenated members (`cat a.gz b.gz`) are one gzip file.
            decoder.multiple_members(true);
            Box::pin(decoder)
        } else {
            Box::pin(body)
        })
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<String> {
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.version_id.unwrap_or_else(|| NULL_VERSION.to_owned()))
    }
}
