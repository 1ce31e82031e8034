//! Events: no defaults, and they expire `--event-ttl` after they are created.

use bosun_api::field::FieldError;
use bosun_api::resources::{EVENTS, Resource};
use jiff::Timestamp;
use k8s_openapi::api::core::v1 as api;
use k8s_pb::api::core::v1 as pb;
use prost::Message;
use serde_json::Value;

use super::Strategy;
use super::validation as v;
use crate::encoding::protobuf::{self, DecodeError, Obj};
use crate::encoding::table::{self, Column};
use crate::merge::schema::{METADATA_ONLY, Schema};

/// The event kind (`v1` Events).
#[derive(Debug)]
pub struct Event;

impl Strategy for Event {
    type Object = api::Event;

    fn resource(&self) -> &'static Resource {
        &EVENTS
    }

    fn default(&self, _obj: &mut api::Event) {}

    fn validate(&self, obj: &api::Event) -> Vec<FieldError> {
        v::validate_event(obj)
    }

    fn validate_update(&self, new: &api::Event, _old: &api::Event) -> Vec<FieldError> {
        v::validate_event(new)
    }

    fn prepare_for_create(&self, _obj: &mut Value) {}

    fn table_columns(&self) -> &'static [Column] {
        &table::EVENT_COLUMNS
    }

    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        table::event_cells(obj, now)
    }

    fn merge_schema(&self) -> &'static Schema {
        &METADATA_ONLY
    }

    fn decode_protobuf(&self, head: Obj, raw: &[u8]) -> Result<Value, DecodeError> {
        Ok(protobuf::event(head, &pb::Event::decode(raw)?))
    }

    fn expires(&self) -> bool {
        true
    }
}
