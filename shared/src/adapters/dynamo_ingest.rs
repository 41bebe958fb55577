//! The ingest records on DynamoDB (`INGESTS_TABLE`, partition key
//! `ingest_id`, TTL on `expires_at`). One item per ingest, the checkpoint
//! inside it; every write after the first is conditional on `revision`.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use crate::catalogue::Ingest;
use crate::error::{Error, Result};
use crate::ports::IngestStore;

const COMPONENT: &str = "dynamodb";

pub struct DynamoIngestStore {
    client: Client,
    table: String,
}

impl DynamoIngestStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoIngestStore {
        DynamoIngestStore {
            client,
            table: table.into(),
        }
    }
}

fn unavailable(err: impl std::error::Error) -> Error {
    Error::unavailable(COMPONENT, DisplayErrorContext(err))
}

fn encode(ingest: &Ingest) -> Result<HashMap<String, AttributeValue>> {
    serde_dynamo::to_item(ingest).map_err(|e| Error::Internal(format!("encode ingest: {e}")))
}

fn decode(item: HashMap<String, AttributeValue>) -> Result<Ingest> {
    serde_dynamo::from_item(item).map_err(|e| Error::Internal(format!("stored ingest: {e}")))
}

impl IngestStore for DynamoIngestStore {
    async fn create(&self, ingest: &Ingest) -> Result<Ingest> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(ingest)?))
            .condition_expression("attribute_not_exists(ingest_id)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(ingest.clone()),
            Err(err) => match err.into_service_error() {
                PutItemError::ConditionalCheckFailedException(_) => {
                    self.get(&ingest.ingest_id).await?.ok_or_else(|| {
                        Error::unavailable(COMPONENT, "an ingest vanished as it was made")
                    })
                }
                other => Err(unavailable(other)),
            },
        }
    }

    async fn get(&self, ingest_id: &str) -> Result<Option<Ingest>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("ingest_id", AttributeValue::S(ingest_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.map(decode).transpose()
    }

    async fn replace(&self, ingest: &Ingest) -> Result<bool> {
        let mut next = ingest.clone();
        next.revision += 1;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&next)?))
            .condition_expression("revision = :seen")
            .expression_attribute_values(":seen", AttributeValue::N(ingest.revision.to_string()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(err) => match err.into_service_error() {
                PutItemError::ConditionalCheckFailedException(_) => Ok(false),
                other => Err(unavailable(other)),
            },
        }
    }
}
