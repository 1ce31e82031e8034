//! Leases (`coordination.k8s.io`): node heartbeats and leader election.

use bosun_api::field::FieldError;
use bosun_api::resources::{LEASES, Resource};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1 as api;
use k8s_pb::api::coordination::v1 as pb;
use prost::Message;
use serde_json::Value;

use super::Strategy;
use super::validation as v;
use crate::encoding::protobuf::{self, DecodeError, Obj};
use crate::encoding::table::{self, Column};
use crate::merge::schema::{METADATA_ONLY, Schema};

/// The lease kind.
#[derive(Debug)]
pub struct Lease;

impl Strategy for Lease {
    type Object = api::Lease;

    fn resource(&self) -> &'static Resource {
        &LEASES
    }

    fn default(&self, _obj: &mut api::Lease) {}

    fn validate(&self, obj: &api::Lease) -> Vec<FieldError> {
        v::validate_lease(obj)
    }

    fn validate_update(&self, new: &api::Lease, _old: &api::Lease) -> Vec<FieldError> {
        v::validate_lease(new)
    }

    fn prepare_for_create(&self, _obj: &mut Value) {}

    fn table_columns(&self) -> &'static [Column] {
        &table::LEASE_COLUMNS
    }

    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        table::lease_cells(obj, now)
    }

    fn merge_schema(&self) -> &'static Schema {
        &METADATA_ONLY
    }

    fn decode_protobuf(&self, head: Obj, raw: &[u8]) -> Result<Value, DecodeError> {
        Ok(protobuf::lease(head, &pb::Lease::decode(raw)?))
    }
}
