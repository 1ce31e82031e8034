//! Nodes (cluster-scoped; their kubelets keep their status).

use bosun_api::field::FieldError;
use bosun_api::resources::{NODES, Resource};
use jiff::Timestamp;
use k8s_openapi::api::core::v1 as api;
use k8s_pb::api::core::v1 as pb;
use prost::Message;
use serde_json::Value;

use super::Strategy;
use super::validation as v;
use crate::encoding::protobuf::{self, DecodeError, Obj};
use crate::encoding::table::{self, Column};
use crate::merge::schema::{OBJECT_META, OPAQUE, Schema, field, keyed, primitives};

/// The node kind.
#[derive(Debug)]
pub struct Node;

/// `v1.NodeSpec`.
static SPEC: Schema = Schema::new(&[primitives("podCIDRs")]);

/// `v1.NodeStatus`.
static STATUS: Schema = Schema::new(&[
    keyed("conditions", "type", &OPAQUE),
    keyed("addresses", "type", &OPAQUE),
]);

static MERGE: Schema = Schema::new(&[
    field("metadata", &OBJECT_META),
    field("spec", &SPEC),
    field("status", &STATUS),
]);

impl Strategy for Node {
    type Object = api::Node;

    fn resource(&self) -> &'static Resource {
        &NODES
    }

    fn default(&self, obj: &mut api::Node) {
        v::default_node(obj);
    }

    fn validate(&self, obj: &api::Node) -> Vec<FieldError> {
        v::validate_node(obj)
    }

    fn validate_update(&self, new: &api::Node, _old: &api::Node) -> Vec<FieldError> {
        v::validate_node(new)
    }

    fn prepare_for_create(&self, _obj: &mut Value) {}

    fn table_columns(&self) -> &'static [Column] {
        &table::NODE_COLUMNS
    }

    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        table::node_cells(obj, now)
    }

    fn merge_schema(&self) -> &'static Schema {
        &MERGE
    }

    fn decode_protobuf(&self, head: Obj, raw: &[u8]) -> Result<Value, DecodeError> {
        Ok(protobuf::node(head, &pb::Node::decode(raw)?))
    }
}
