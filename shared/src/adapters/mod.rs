//! Adapters implementing the ports, each behind the Cargo feature of what it
//! talks to: DynamoDB (tasks, and the quota's buckets in `dynamo_quota`;
//! `dynamodb`), SQS (queue, `sqs`), Secrets Manager (`secrets`), S3 (the
//! ingest bucket, `s3`), PostgreSQL
//! with pgvector (job index; db_connect builds the pool, plain URL or RDS IAM
//! auth; cache keeps results and text embeddings; schema applies migrations/
//! and db/; `postgres`), and in-memory ones for unit tests (`test-support`).

#[cfg(feature = "postgres")]
pub mod cache;
#[cfg(feature = "postgres")]
pub mod db_connect;
#[cfg(feature = "dynamodb")]
pub mod dynamo;
#[cfg(feature = "dynamodb")]
pub mod dynamo_ingest;
#[cfg(feature = "dynamodb")]
pub mod dynamo_quota;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
pub mod postgres_catalogue;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "postgres")]
pub mod schema;
#[cfg(feature = "secrets")]
pub mod secrets;
#[cfg(feature = "sqs")]
pub mod sqs;
