//! Deployments: the status is the controller's, so a create drops what the client sent.

use bosun_api::field::FieldError;
use bosun_api::resources::{DEPLOYMENTS, Resource};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1 as api;
use k8s_pb::api::apps::v1 as pb;
use prost::Message;
use serde_json::Value;

use super::Strategy;
use super::validation as v;
use crate::encoding::protobuf::{self, DecodeError, Obj};
use crate::encoding::table::{self, Column};
use crate::merge::schema::{Schema, WORKLOAD};

/// The deployment kind.
#[derive(Debug)]
pub struct Deployment;

impl Strategy for Deployment {
    type Object = api::Deployment;

    fn resource(&self) -> &'static Resource {
        &DEPLOYMENTS
    }

    fn default(&self, obj: &mut api::Deployment) {
        v::default_deployment(obj);
    }

    fn validate(&self, obj: &api::Deployment) -> Vec<FieldError> {
        v::validate_deployment(obj)
    }

    fn validate_update(&self, new: &api::Deployment, old: &api::Deployment) -> Vec<FieldError> {
        v::validate_deployment_update(new, old)
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        super::drop_status(obj);
    }

    fn table_columns(&self) -> &'static [Column] {
        &table::DEPLOYMENT_COLUMNS
    }

    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        table::deployment_cells(obj, now)
    }

    fn merge_schema(&self) -> &'static Schema {
        &WORKLOAD
    }

    fn decode_protobuf(&self, head: Obj, raw: &[u8]) -> Result<Value, DecodeError> {
        protobuf::deployment(head, &pb::Deployment::decode(raw)?)
    }
}
