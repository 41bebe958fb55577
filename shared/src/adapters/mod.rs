//! Adapters implementing the ports: DynamoDB (tasks), SQS (queue), PostgreSQL
//! with pgvector (job index), and in-memory ones for unit tests; db_connect
//! (plain URL or RDS IAM auth) builds the PostgreSQL pool; cache keeps
//! results and text embeddings in PostgreSQL.

pub mod cache;
pub mod db_connect;
pub mod dynamo;
pub mod memory;
pub mod postgres;
pub mod secrets;
pub mod sqs;
