//! ReplicaSets: the status is the controller's, so a create drops what the client sent.

use bosun_api::field::FieldError;
use bosun_api::resources::{REPLICASETS, Resource};
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

/// The replica set kind.
#[derive(Debug)]
pub struct ReplicaSet;

impl Strategy for ReplicaSet {
    type Object = api::ReplicaSet;

    fn resource(&self) -> &'static Resource {
        &REPLICASETS
    }

    fn default(&self, obj: &mut api::ReplicaSet) {
        v::default_replicaset(obj);
    }

    fn validate(&self, obj: &api::ReplicaSet) -> Vec<FieldError> {
        v::validate_replicaset(obj)
    }

    fn validate_update(&self, new: &api::ReplicaSet, old: &api::ReplicaSet) -> Vec<FieldError> {
        v::validate_replicaset_update(new, old)
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        super::drop_status(obj);
    }

    fn table_columns(&self) -> &'static [Column] {
        &table::REPLICASET_COLUMNS
    }

    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        table::replicaset_cells(obj, now)
    }

    fn merge_schema(&self) -> &'static Schema {
        &WORKLOAD
    }

    fn decode_protobuf(&self, head: Obj, raw: &[u8]) -> Result<Value, DecodeError> {
        protobuf::replica_set(head, &pb::ReplicaSet::decode(raw)?)
    }
}
