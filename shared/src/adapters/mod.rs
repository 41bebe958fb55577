//! Adapters implementing the ports: DynamoDB (tasks), SQS (queue), PostgreSQL
//! with pgvector (job index), and in-memory ones for unit tests.

pub mod dynamo;
pub mod memory;
pub mod postgres;
pub mod secrets;
pub mod sqs;
